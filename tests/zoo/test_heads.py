"""zoo.heads: AdaptiveAvgPool2d -> flatten -> Linear as one layer. Against a float64 NumPy reference
written from PyTorch's definitions (bins ``[floor(i n / out), ceil((i + 1) n / out))``, NCHW flatten,
``x @ W + b``), for maps smaller than, equal to and larger than the pool's output; parameters, their
initial values and the gradients those of ``nn.Dense`` on the pooled features."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo import heads
from zoo.layers import Ops, adaptive_avg_pool, flatten_nchw

SIZES = [((1, 1), 7), ((2, 2), 7), ((3, 5), 7), ((14, 2), 7), ((7, 7), 7), ((9, 9), 7),
         ((1, 1), 6), ((4, 4), 6), ((13, 13), 6)]


def _reference(x: np.ndarray, size: int, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """PyTorch's AdaptiveAvgPool2d(size) -> torch.flatten(x, 1) -> Linear, in float64, x: (B, H, W, C)."""
    b, h, w, c = x.shape
    pooled = np.zeros((b, c, size, size))
    for i in range(size):
        for j in range(size):
            r0, r1 = (i * h) // size, -(-((i + 1) * h) // size)
            c0, c1 = (j * w) // size, -(-((j + 1) * w) // size)
            pooled[:, :, i, j] = x[:, r0:r1, c0:c1, :].mean(axis=(1, 2))
    return pooled.reshape(b, -1) @ kernel + bias


@pytest.mark.parametrize("hw,size", SIZES)
def test_values_match_pool_flatten_linear(hw, size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *hw, 4))
    layer = heads.PooledDense(5, size=(size, size))
    v = layer.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
    assert v["params"]["kernel"].shape == (4 * size * size, 5) and v["params"]["bias"].shape == (5,)
    kernel = rng.standard_normal((4 * size * size, 5))
    bias = rng.standard_normal(5)
    y = layer.apply({"params": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}},
                    jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(y), _reference(x, size, kernel, bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,size", SIZES)
def test_gradients_are_those_of_dense_on_the_pooled_features(hw, size):
    x = jax.random.normal(jax.random.key(1), (2, *hw, 3))
    layer, dense = heads.PooledDense(4, size=(size, size)), nn.Dense(4)
    params = layer.init(jax.random.key(2), x)["params"]

    def ours(p, x):
        return jnp.sum(jnp.tanh(layer.apply({"params": p}, x)) ** 2)

    def literal(p, x):
        return jnp.sum(jnp.tanh(dense.apply({"params": p}, flatten_nchw(adaptive_avg_pool(x, size)))) ** 2)

    ours, literal = (jax.jit(jax.grad(f, argnums=(0, 1)))(params, x) for f in (ours, literal))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(literal)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_and_their_initial_values_are_the_dense_layers():
    """Same names, shapes and initial values as ``ops.dense`` on the pooled, flattened features
    (the init draws from the same key path), so runs and checkpoints are as before the layer."""
    x = jnp.ones((2, 1, 1, 8))

    class Literal(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Ops().dense(flatten_nchw(adaptive_avg_pool(x, 7)), 16, name="classifier_0")

    class Ours(nn.Module):
        @nn.compact
        def __call__(self, x):
            return heads.pooled_dense(Ops(), x, 7, 16, name="classifier_0")

    a, b = Literal().init(jax.random.key(3), x), Ours().init(jax.random.key(3), x)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, w)


def test_an_active_dropout_between_pool_and_linear_keeps_its_masks():
    """AlexNet's classifier_0 dropout in train mode: the layers run as written, the dropout in the
    calling module, so the masks (drawn from the module path) are those it drew before."""
    ops = Ops(train=True)
    x = jax.random.normal(jax.random.key(4), (4, 2, 2, 8))

    class Literal(nn.Module):
        @nn.compact
        def __call__(self, x):
            return ops.dense(ops.dropout(flatten_nchw(adaptive_avg_pool(x, 6)), 0.5), 16, name="fc")

    class Ours(nn.Module):
        @nn.compact
        def __call__(self, x):
            return heads.pooled_dense(ops, x, 6, 16, dropout=0.5, name="fc")

    v = Literal().init(jax.random.key(5), x)
    rngs = {"dropout": jax.random.key(6)}
    np.testing.assert_array_equal(Literal().apply(v, x, rngs=rngs), Ours().apply(v, x, rngs=rngs))


@pytest.mark.parametrize("name,res", [("vgg11", 32), ("alexnet", 63)])
def test_small_inputs_give_the_models_logits_of_the_literal_head(name, res, monkeypatch):
    """VGG at 32x32 (a 1x1 map before the 7x7 pool) and AlexNet at 63x63 (1x1 before 6x6), eval:
    the folded kernel gives the logits of pool -> flatten -> Linear computed as written."""
    model = zoo.create(name, num_classes=10)
    x = jax.random.normal(jax.random.key(7), (2, res, res, 3))
    v = zoo.init(model, (res, res, 3), rng=jax.random.key(8))   # one compiled call (eager: ~10 s for VGG's 133 M)
    folds = []
    fold = heads.fold_pool_into_kernel
    monkeypatch.setattr(heads, "fold_pool_into_kernel", lambda *a: folds.append(a[2:]) or fold(*a))
    folded = model.apply(v, x, train=False)
    assert folds == [((7, 7) if name == "vgg11" else (6, 6), (1, 1))]

    def as_written(self, x):  # the torchvision layers, one after the other
        x = flatten_nchw(adaptive_avg_pool(x, self.size))
        return x @ self.variables["params"]["kernel"] + self.variables["params"]["bias"]

    monkeypatch.setattr(heads.PooledDense, "__call__", nn.compact(as_written))
    np.testing.assert_allclose(model.apply(v, x, train=False), folded, rtol=1e-4, atol=1e-5)
