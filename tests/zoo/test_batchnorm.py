"""zoo.batchnorm.BatchNorm: flax's BatchNorm with the running variance PyTorch documents for
``BatchNorm2d`` ("the value stored in the moving average ... is calculated via the unbiased
estimator, equivalent to torch.var(input, unbiased=True)") and Ioffe & Szegedy 2015 (Algorithm 2:
``m / (m - 1) * E[sigma_B^2]``). The reference is numpy's ``var(ddof=1)`` in float64."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from helpers import FIXTURES
from zoo.batchnorm import BatchNorm, bessel

MOMENTUM = 0.9


def _x(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * rng.uniform(0.5, 3.0, shape[-1]) + rng.uniform(-2, 2, shape[-1])).astype(np.float32)


def _train(module, x, variables):
    return jax.jit(lambda v, x: module.apply(v, x, use_running_average=False, mutable=["batch_stats"]))(variables, x)


@pytest.mark.parametrize("shape", [(4, 5, 6, 3), (64, 1, 1, 8), (2, 1, 1, 4)])
def test_running_variance_is_pytorchs_unbiased_one_and_the_rest_is_flaxs(shape):
    x = _x(shape)
    ours, flax_bn = BatchNorm(momentum=MOMENTUM), nn.BatchNorm(momentum=MOMENTUM)
    v = ours.init(jax.random.key(0), x, use_running_average=True)
    assert jax.tree_util.tree_map(jnp.shape, v) == jax.tree_util.tree_map(
        jnp.shape, flax_bn.init(jax.random.key(0), x, use_running_average=True))
    y, new = _train(ours, x, v)
    y_flax, new_flax = _train(flax_bn, x, v)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_flax))      # batch normalised with the biased variance
    np.testing.assert_array_equal(new["batch_stats"]["mean"], new_flax["batch_stats"]["mean"])
    x64 = x.astype(np.float64).reshape(-1, shape[-1])
    expected = MOMENTUM * 1.0 + (1 - MOMENTUM) * x64.var(axis=0, ddof=1)
    np.testing.assert_allclose(new["batch_stats"]["var"], expected, rtol=2e-6)
    biased = MOMENTUM * 1.0 + (1 - MOMENTUM) * x64.var(axis=0, ddof=0)
    np.testing.assert_allclose(new_flax["batch_stats"]["var"], biased, rtol=2e-6)  # what flax keeps instead


def test_evaluation_uses_the_running_statistics_as_flax_does():
    x = _x((3, 4, 4, 5))
    v = BatchNorm().init(jax.random.key(0), x, use_running_average=True)
    v = jax.tree_util.tree_map(lambda a: a + 0.5, v)
    y = BatchNorm().apply(v, x, use_running_average=True)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(nn.BatchNorm().apply(v, x, use_running_average=True)))


def test_initialising_in_training_mode_leaves_the_statistics_at_zero_and_one():
    x = _x((2, 3, 3, 4))
    v = BatchNorm(use_running_average=False).init(jax.random.key(0), x)
    np.testing.assert_array_equal(v["batch_stats"]["mean"], np.zeros(4))
    np.testing.assert_array_equal(v["batch_stats"]["var"], np.ones(4))


def test_one_value_per_channel_keeps_the_biased_estimate():
    """m = 1 has no unbiased estimate (PyTorch refuses to train on it): the factor is 1, as in flax."""
    assert bessel(jnp.zeros((1, 1, 1, 3)), (0, 1, 2)) == 1.0
    assert bessel(jnp.zeros((2, 1, 1, 3)), (0, 1, 2)) == 2.0
    assert bessel(jnp.zeros((4, 5, 6, 3)), (0, 1, 2)) == pytest.approx(120 / 119)


def test_a_mask_counts_only_the_values_it_keeps():
    x = _x((4, 3, 3, 2))
    mask = np.zeros((4, 3, 3, 1), bool)
    mask[:3] = True                                                         # the last image left out
    v = BatchNorm(momentum=MOMENTUM).init(jax.random.key(0), x, use_running_average=True)
    _, new = BatchNorm(momentum=MOMENTUM).apply(v, x, use_running_average=False, mask=mask, mutable=["batch_stats"])
    kept = x[:3].astype(np.float64).reshape(-1, 2)
    np.testing.assert_allclose(new["batch_stats"]["var"], MOMENTUM + (1 - MOMENTUM) * kept.var(axis=0, ddof=1), rtol=2e-6)


def test_under_a_named_axis_m_counts_every_device():
    """``axis_name`` statistics: m is the count over all devices of the axis (here the one device of a
    shard_map; tests/train/test_parallel.py compares whole states on 1, 2, 4 and 8 devices)."""
    x = _x((6, 2, 2, 3))
    bn = BatchNorm(momentum=MOMENTUM, axis_name="data")
    v = BatchNorm(momentum=MOMENTUM).init(jax.random.key(0), x, use_running_average=True)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    step = jax.jit(jax.shard_map(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])[1],
                                 mesh=mesh, in_specs=(P(), P("data")), out_specs=P()))
    new = step(v, x)
    x64 = x.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(new["batch_stats"]["var"], MOMENTUM + (1 - MOMENTUM) * x64.var(axis=0, ddof=1), rtol=2e-6)


def test_two_training_steps_keep_what_pytorchs_batchnorm2d_keeps():
    """tests/fixtures/parity/batchnorm_train.npz: PyTorch's own running statistics and output."""
    ref = np.load(FIXTURES / "parity" / "batchnorm_train.npz")
    x = ref["x"].transpose(0, 2, 3, 1)                                       # NCHW -> NHWC
    bn = BatchNorm(momentum=1 - 0.1)                                          # PyTorch's momentum 0.1
    v = bn.init(jax.random.key(0), x, use_running_average=True)
    _, new = bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
    y2, new = bn.apply({**v, **new}, x[:2], use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(new["batch_stats"]["var"], ref["running_var"], rtol=1e-6)
    np.testing.assert_allclose(new["batch_stats"]["mean"], ref["running_mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(y2).transpose(0, 3, 1, 2), ref["y2"], atol=2e-6)


def test_training_on_one_value_per_channel_is_refused_as_torchvision_refuses_it():
    """A batch of 1 reaching a 1x1 map: the statistics of one value make the output the bias alone
    (ResNet-18's logits were the same for every image, the input gradient 0) and the running variance
    decay towards 0. torchvision: "Expected more than 1 value per channel when training"."""
    import zoo

    model = zoo.create("resnet18", num_classes=10)
    variables = zoo.init(model, (32, 32, 3))
    with pytest.raises(ValueError, match=r"^BatchNorm layer4_0/bn1 in training needs more than 1 value per channel, "
                                         r"got x: \(1, 1, 1, 512\); train with a batch of 2 or more, or use "
                                         r"train=False"):
        model.apply(variables, jnp.ones((1, 32, 32, 3)), train=True, mutable=["batch_stats"])
    two, _ = model.apply(variables, jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), train=True,
                         mutable=["batch_stats"])
    assert not np.allclose(two[0], two[1])
    assert model.apply(variables, jnp.ones((1, 32, 32, 3)), train=False).shape == (1, 10)   # eval: fine
    bn = BatchNorm(use_running_average=False)
    v = bn.init(jax.random.key(0), jnp.ones((1, 4)))   # initialising with one value is fine
    with pytest.raises(ValueError, match=r"got x: \(1, 4\)"):
        bn.apply(v, jnp.ones((1, 4)), mutable=["batch_stats"])


# ----------------------------------------------------------------------------- the training gradient

def _grads(bn, v, x, dy):
    """``y`` and the gradients of ``sum(dy * y)`` w.r.t. ``x`` and the parameters, in training."""
    def f(params, x):
        y, _ = bn.apply({**v, "params": params}, x, use_running_average=False, mutable=["batch_stats"])
        return y
    y, pull = jax.vjp(f, v["params"], x)
    d_params, dx = pull(jnp.asarray(dy, y.dtype))
    return y, dx, d_params


def test_training_gradient_is_pytorchs_batchnorm2d_backward():
    """tests/fixtures/parity/batchnorm_grad.npz: PyTorch's ``batch_norm_backward`` (channel 0 all zeros:
    variance 0)."""
    ref = np.load(FIXTURES / "parity" / "batchnorm_grad.npz")
    nhwc = lambda a: a.transpose(0, 2, 3, 1)                                  # noqa: E731
    x, dy = nhwc(ref["x"]), nhwc(ref["dy"])
    bn = BatchNorm()
    v = bn.init(jax.random.key(0), x, use_running_average=True)
    v = {**v, "params": {"scale": jnp.asarray(ref["weight"]), "bias": jnp.asarray(ref["bias"])}}
    y, dx, d_params = _grads(bn, v, x, dy)
    np.testing.assert_allclose(np.asarray(y), nhwc(ref["y"]), atol=2e-6)
    np.testing.assert_allclose(np.asarray(dx), nhwc(ref["dx"]), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(d_params["scale"], ref["dweight"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_params["bias"], ref["dbias"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_training_values_are_flaxs_to_the_bit_and_the_gradients_its_autodiff_to_rounding(dtype):
    x = jnp.asarray(_x((6, 4, 4, 8)), dtype).at[..., 0].set(0).at[..., 1].set(1.5)   # variance 0, and ~0
    dy = _x((6, 4, 4, 8), seed=1)
    ours, flax_bn = BatchNorm(momentum=MOMENTUM, dtype=dtype), nn.BatchNorm(momentum=MOMENTUM, dtype=dtype)
    v = ours.init(jax.random.key(0), x, use_running_average=True)
    v = {**v, "params": {"scale": jnp.linspace(-2, 2, 8), "bias": jnp.linspace(1, -1, 8)}}
    y, dx, d_params = _grads(ours, v, x, dy)
    y_flax, dx_flax, d_params_flax = _grads(flax_bn, v, x, dy)
    assert y.dtype == y_flax.dtype == dtype and dx.dtype == dx_flax.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_flax, np.float32))
    rtol = 1e-5 if dtype == jnp.float32 else 1e-2                                # bfloat16: its 8 bits
    scale = float(jnp.max(jnp.abs(dx_flax.astype(jnp.float32))))
    np.testing.assert_allclose(np.asarray(dx, np.float32), np.asarray(dx_flax, np.float32), atol=rtol * scale)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(d_params[k], d_params_flax[k], rtol=1e-5, atol=1e-5)


def _flax_composition(x, scale, bias):
    """flax's own steps (``_compute_stats`` then the normalisation), differentiated by autodiff."""
    from flax.linen.normalization import _compute_stats

    mean, var = _compute_stats(x, (0, 1, 2), dtype=None)
    return (x - mean) * (jax.lax.rsqrt(var + 1e-5) * scale) + bias, mean, var


def test_gradients_through_the_statistics_are_autodiffs():
    """Cotangents given for the batch mean and variance too (nothing in the zoo differentiates them:
    the running averages are not differentiated, and then they are not computed)."""
    from zoo.batchnorm import batch_norm_train

    x, w = _x((4, 3, 3, 5)), _x((4, 3, 3, 5), seed=1)
    scale, bias, wm, wv = (jnp.asarray(_x((1, 5), seed=s)[0]) for s in (2, 3, 4, 5))

    def loss(f):
        return lambda x, s, b: (lambda y, m, v: jnp.sum(w * y) + jnp.sum(wm * m) + jnp.sum(wv * v))(*f(x, s, b))
    ours = jax.grad(loss(lambda x, s, b: batch_norm_train(x, s, b, (0, 1, 2), 1e-5, jnp.float32, jnp.float32)),
                    argnums=(0, 1, 2))(x, scale, bias)
    theirs = jax.grad(loss(_flax_composition), argnums=(0, 1, 2))(x, scale, bias)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_over_a_named_axis_the_gradient_is_the_whole_batchs():
    """Four shards of a batch under ``vmap(axis_name=...)`` (the collectives of four devices in one
    process): the input gradient is that of normalising the whole batch, and the shards' parameter
    gradients add up to its."""
    x, dy = _x((8, 3, 3, 4)), _x((8, 3, 3, 4), seed=1)
    bn = BatchNorm(momentum=MOMENTUM, axis_name="shards")
    v = BatchNorm().init(jax.random.key(0), x, use_running_average=True)
    v = {**v, "params": {"scale": jnp.asarray([0.5, -1.0, 2.0, 1.5]), "bias": jnp.asarray([0.1, 0.2, -0.3, 0.0])}}
    shards = jax.vmap(lambda x, dy: _grads(bn, v, x, dy), axis_name="shards")
    y, dx, d_params = shards(x.reshape(4, 2, 3, 3, 4), dy.reshape(4, 2, 3, 3, 4))
    y_whole, dx_whole, d_whole = _grads(BatchNorm(momentum=MOMENTUM), v, x, dy)
    np.testing.assert_allclose(y.reshape(x.shape), y_whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx.reshape(x.shape), dx_whole, rtol=1e-5, atol=1e-5)
    for k in ("scale", "bias"):
        np.testing.assert_allclose(d_params[k].sum(0), d_whole[k], rtol=1e-5, atol=1e-5)


def test_a_one_device_axis_averages_nothing_and_changes_no_value():
    """A mean over one device is the value itself: no all-reduce in the program of an unchecked
    shard_map (the train step's, ``check_vma=False``), the same values to the bit as without the axis.
    A checked shard_map keeps the collective (its types need it): ``test_under_a_named_axis_...``."""
    x = _x((6, 2, 2, 3))
    v = BatchNorm().init(jax.random.key(0), x, use_running_average=True)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))

    def run(bn):
        return jax.jit(jax.shard_map(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]),
                                     mesh=mesh, in_specs=(P(), P("data")), out_specs=P(), check_vma=False))
    step = run(BatchNorm(momentum=MOMENTUM, axis_name="data"))
    assert "all-reduce" not in step.lower(v, x).compile().as_text()
    for a, b in zip(jax.tree.leaves(step(v, x)), jax.tree.leaves(run(BatchNorm(momentum=MOMENTUM))(v, x))):
        np.testing.assert_array_equal(a, b)
