"""DenseNet-BC against Huang et al. 2017 (Table 1: channels after each dense block, layer structure)
and torchvision (names, tensor count, init, BatchNorm defaults), dropout and remat. Shapes and
parameters use jax.eval_shape; compiled passes use a small DenseNet on 16x16 inputs, batch 2.
Figures marked "torchvision" were read off torchvision 0.28 (the reference implementation)."""
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import inner_loop_sample, abstract_variables, batchnorm_settings, flat, forward_shapes, images, key, run_once
from zoo.densenet import DenseNet
from zoo.summary import param_count

SMALL_DENSENET = dict(growth_rate=8, block_config=(3,), num_init_features=16, num_classes=5)  # 16x16 inputs


@functools.lru_cache(maxsize=None)
def _small_densenet(dropout=0.0):
    model = DenseNet(**SMALL_DENSENET, dropout=dropout)
    x = images((2, 16, 16, 3))
    return model, x, jax.jit(model.init)(key(0), x)


@pytest.mark.parametrize("name, blocks", inner_loop_sample([
    # Table 1 / torchvision: channels after each dense block (transitions halve them).
    ("densenet121", (256, 512, 1024, 1024)),
    ("densenet161", (384, 768, 2112, 2208)),
    ("densenet169", (256, 512, 1280, 1664)),
    ("densenet201", (256, 512, 1792, 1920)),
], {("densenet121", (256, 512, 1024, 1024))}))
def test_densenet_blocks_match_table1(name, blocks):
    params = abstract_variables(name)["params"]
    for i, c in enumerate(blocks[:3]):
        assert params[f"features_transition{i + 1}"]["conv"]["kernel"].shape == (1, 1, c, c // 2)
    assert params["features_norm5"]["scale"].shape == (blocks[-1],)
    assert params["classifier"]["kernel"].shape == (blocks[-1], 1000)


def test_densenet_taps():
    feats, _ = forward_shapes("densenet121")
    assert feats == dict(
        stem=(1, 56, 56, 64), denseblock1=(1, 56, 56, 256), denseblock2=(1, 28, 28, 512),
        denseblock3=(1, 14, 14, 1024), denseblock4=(1, 7, 7, 1024), norm5=(1, 7, 7, 1024), pre_logits=(1, 1024))


def test_densenet_names_are_torchvision():
    v = abstract_variables("densenet121")
    params, stats = flat(v["params"]), flat(v["batch_stats"])
    for name, shape in [("features_conv0/kernel", (7, 7, 3, 64)), ("features_norm0/scale", (64,)),
                       ("features_denseblock1/denselayer1/norm1/scale", (64,)),
                       ("features_denseblock1/denselayer1/conv1/kernel", (1, 1, 64, 128)),
                       ("features_denseblock1/denselayer1/conv2/kernel", (3, 3, 128, 32)),
                       ("features_denseblock1/denselayer6/conv1/kernel", (1, 1, 64 + 5 * 32, 128)),
                       ("features_transition1/conv/kernel", (1, 1, 256, 128)),
                       ("features_denseblock4/denselayer16/conv2/kernel", (3, 3, 128, 32)),
                       ("features_norm5/bias", (1024,)), ("classifier/kernel", (1024, 1000))]:
        assert params[name].shape == shape, name
    assert "features_transition3/norm/mean" in stats
    # torchvision's state_dict (without num_batches_tracked) holds 606 tensors.
    assert len(params) + len(stats) == 606


def test_densenet_small_config_params_match_torchvision():
    model = DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, num_classes=5)
    assert param_count(abstract_variables(model, (32, 32, 3))) == 28_725  # torchvision DenseNet(same args)


def test_densenet_without_norm_convs_carry_bias():
    v = abstract_variables(DenseNet(**SMALL_DENSENET, norm=None), (16, 16, 3))
    assert set(v) == {"params"}
    layer = v["params"]["features_denseblock1"]["denselayer1"]
    assert set(layer) == {"conv1", "conv2"} and all("bias" in layer[c] for c in layer)


def test_densenet_init_is_torchvision():
    _, _, v = _small_densenet()
    p = flat(v["params"])
    k = np.asarray(p["features_conv0/kernel"])  # kaiming_normal_, fan_in = 7 * 7 * 3
    assert abs(k.std() / math.sqrt(2.0 / 147) - 1) < 0.1
    np.testing.assert_array_equal(p["classifier/bias"], 0.0)
    bound = 1 / math.sqrt(p["classifier/kernel"].shape[0])  # nn.Linear default weight
    assert np.abs(p["classifier/kernel"]).max() <= bound
    np.testing.assert_array_equal(p["features_norm5/scale"], 1.0)
    np.testing.assert_array_equal(p["features_norm5/bias"], 0.0)


def test_densenet_bn_defaults_reach_every_layer():
    model = zoo.create("densenet121")
    assert (model.bn_epsilon, model.bn_momentum) == (1e-5, 0.9)  # PyTorch eps 1e-5, momentum 0.1
    assert batchnorm_settings(model, (32, 32, 3)) == {(1e-5, 0.9)}


@pytest.mark.integration
def test_densenet_dropout_in_dense_layers():
    model, x, v = _small_densenet(0.5)

    @jax.jit
    def run(v, x, key):  # eval ignores the dropout rng; train draws a new mask per key
        train, _ = model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
        return model.apply(v, x, rngs={"dropout": key}), train

    (e1, t1), (e2, t2) = run(v, x, key(1)), run(v, x, key(2))
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(t1, t2)


@pytest.mark.integration
def test_densenet_remat_same_outputs_and_gradients():
    plain, x, v = _small_densenet(0.2)
    labels = jnp.array([1, 3])
    remat = DenseNet(**SMALL_DENSENET, dropout=0.2, remat=True)
    v_remat = jax.eval_shape(lambda: remat.init(jax.random.key(0), x))
    assert jax.tree.map(lambda a: a.shape, v_remat) == jax.tree.map(lambda a: a.shape, v)  # same names and shapes

    def loss_fn(model):
        def f(params, stats):
            logits, upd = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                      rngs={"dropout": key(7)}, mutable=["batch_stats"])
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)), (logits, upd)
        return jax.value_and_grad(f, has_aux=True)

    (l0, (y0, s0)), g0 = run_once(loss_fn(plain), v["params"], v["batch_stats"])
    (l1, (y1, s1)), g1 = run_once(loss_fn(remat), v["params"], v["batch_stats"])
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    np.testing.assert_allclose(y0, y1, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s0, s1)
    # float32 sums in another order; some gradients (norms followed by conv + norm) are pure cancellation,
    # so the tolerance is on the scale of all gradients (in float64 the two agree to ~1e-11).
    scale = max(float(np.abs(a).max()) for a in jax.tree.leaves(g0))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)

    # remat really is in the program: one jax.checkpoint per dense layer, none without it.
    def checkpoints(model):
        jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, x))(v))
        return len(re.findall(r"\b(?:checkpoint|remat\w*)\[", jaxpr))

    assert (checkpoints(remat), checkpoints(plain)) == (3, 0)


@pytest.mark.parametrize("override, pattern", [
    (dict(growth_rate=0), "growth_rate"),
    (dict(block_config=()), "block_config"),
    (dict(block_config=(6, 0, 24, 16)), "block_config"),
    (dict(bn_size=0), "bn_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(remat="yes"), "remat"),
])
def test_densenet_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        DenseNet(**override)
    if not {"growth_rate", "block_config"} & set(override):  # densenet121 fixes those (test_registry)
        with pytest.raises(ValueError, match=pattern):
            zoo.create("densenet121", **override)
