"""DenseNet and MobileNet specifics: the papers' tables (channels, layer structure, output sizes),
torchvision's layout (names, tensor counts, width_mult rounding, init, BatchNorm defaults), remat.

Shapes and parameters use jax.eval_shape; compiled passes use 32x32 inputs (16x16 for a small
DenseNet), batch 2.
Figures marked "torchvision" were read off torchvision 0.28 (the reference implementation).
"""
import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import zoo
from zoo.densenet import DenseNet
from zoo.layers import Ops, make_divisible
from zoo.mobilenet import MobileNetV3, SqueezeExcitation
from zoo.summary import abstract_variables, layer_table, param_count


def _flat(tree):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _taps(model, size=224):
    x = jnp.zeros((1, size, size, 3))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    _, state = jax.eval_shape(lambda v: model.apply(v, x, mutable=["features"]), v)
    return {k: tuple(a.shape[1:]) for k, a in state["features"].items()}


def _x(size=32, batch=2):
    return np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)


SMALL_DENSENET = dict(growth_rate=8, block_config=(3,), num_init_features=16, num_classes=5)  # 16x16 inputs


@functools.lru_cache(maxsize=None)
def _small_densenet(dropout=0.0):
    model = DenseNet(**SMALL_DENSENET, dropout=dropout)
    x = _x(16)
    return model, x, jax.jit(model.init)(jax.random.key(0), x)


# ---------------------------------------------------------------------- DenseNet

@pytest.mark.parametrize("name, blocks", [
    # Table 1 / torchvision: channels after each dense block (transitions halve them).
    ("densenet121", (256, 512, 1024, 1024)),
    ("densenet161", (384, 768, 2112, 2208)),
    ("densenet169", (256, 512, 1280, 1664)),
    ("densenet201", (256, 512, 1792, 1920)),
])
def test_densenet_blocks_match_table1(name, blocks):
    params = abstract_variables(zoo.create(name), (224, 224, 3))["params"]
    for i, c in enumerate(blocks[:3]):
        assert params[f"features_transition{i + 1}"]["conv"]["kernel"].shape == (1, 1, c, c // 2)
    assert params["features_norm5"]["scale"].shape == (blocks[-1],)
    assert params["classifier"]["kernel"].shape == (blocks[-1], 1000)


def test_densenet_taps():
    assert _taps(zoo.create("densenet121")) == dict(
        stem=(56, 56, 64), denseblock1=(56, 56, 256), denseblock2=(28, 28, 512), denseblock3=(14, 14, 1024),
        denseblock4=(7, 7, 1024), norm5=(7, 7, 1024), pre_logits=(1024,))


def test_densenet_names_are_torchvision():
    v = abstract_variables(zoo.create("densenet121"), (224, 224, 3))
    params, stats = _flat(v["params"]), _flat(v["batch_stats"])
    for key, shape in [("features_conv0/kernel", (7, 7, 3, 64)), ("features_norm0/scale", (64,)),
                       ("features_denseblock1/denselayer1/norm1/scale", (64,)),
                       ("features_denseblock1/denselayer1/conv1/kernel", (1, 1, 64, 128)),
                       ("features_denseblock1/denselayer1/conv2/kernel", (3, 3, 128, 32)),
                       ("features_denseblock1/denselayer6/conv1/kernel", (1, 1, 64 + 5 * 32, 128)),
                       ("features_transition1/conv/kernel", (1, 1, 256, 128)),
                       ("features_denseblock4/denselayer16/conv2/kernel", (3, 3, 128, 32)),
                       ("features_norm5/bias", (1024,)), ("classifier/kernel", (1024, 1000))]:
        assert params[key].shape == shape, key
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
    p = _flat(v["params"])
    k = np.asarray(p["features_conv0/kernel"])  # kaiming_normal_, fan_in = 7 * 7 * 3
    assert abs(k.std() / math.sqrt(2.0 / 147) - 1) < 0.1
    np.testing.assert_array_equal(p["classifier/bias"], 0.0)
    bound = 1 / math.sqrt(p["classifier/kernel"].shape[0])  # nn.Linear default weight
    assert np.abs(p["classifier/kernel"]).max() <= bound
    np.testing.assert_array_equal(p["features_norm5/scale"], 1.0)
    np.testing.assert_array_equal(p["features_norm5/bias"], 0.0)


def test_densenet_dropout_in_dense_layers():
    model, x, v = _small_densenet(0.5)

    @jax.jit
    def run(v, x, key):  # eval ignores the dropout rng; train draws a new mask per key
        train, _ = model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
        return model.apply(v, x, rngs={"dropout": key}), train

    (e1, t1), (e2, t2) = run(v, x, jax.random.key(1)), run(v, x, jax.random.key(2))
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(t1, t2)


def test_densenet_remat_same_outputs_and_gradients():
    plain, x, v = _small_densenet(0.2)
    labels = jnp.array([1, 3])
    remat = DenseNet(**SMALL_DENSENET, dropout=0.2, remat=True)
    v_remat = jax.eval_shape(lambda: remat.init(jax.random.key(0), x))
    assert jax.tree.map(lambda a: a.shape, v_remat) == jax.tree.map(lambda a: a.shape, v)  # same names and shapes

    def loss_fn(model):
        def f(params, stats):
            logits, upd = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                      rngs={"dropout": jax.random.key(7)}, mutable=["batch_stats"])
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)), (logits, upd)
        return jax.value_and_grad(f, has_aux=True)

    loss = lambda model: jax.jit(loss_fn(model))  # noqa: E731

    (l0, (y0, s0)), g0 = loss(plain)(v["params"], v["batch_stats"])
    (l1, (y1, s1)), g1 = loss(remat)(v["params"], v["batch_stats"])
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
        zoo.create("densenet121", **override)


# ---------------------------------------------------------------------- MobileNet v1

# Table 1 of Howard et al. 2017: (layer, stride, filter shape HWIO, input size). Depthwise filters
# "3x3xC dw" are (3, 3, 1, C) grouped convs.
TABLE1 = [("conv1", 2, (3, 3, 3, 32), 224),
          ("conv_dw_1", 1, (3, 3, 1, 32), 112), ("conv_pw_1", 1, (1, 1, 32, 64), 112),
          ("conv_dw_2", 2, (3, 3, 1, 64), 112), ("conv_pw_2", 1, (1, 1, 64, 128), 56),
          ("conv_dw_3", 1, (3, 3, 1, 128), 56), ("conv_pw_3", 1, (1, 1, 128, 128), 56),
          ("conv_dw_4", 2, (3, 3, 1, 128), 56), ("conv_pw_4", 1, (1, 1, 128, 256), 28),
          ("conv_dw_5", 1, (3, 3, 1, 256), 28), ("conv_pw_5", 1, (1, 1, 256, 256), 28),
          ("conv_dw_6", 2, (3, 3, 1, 256), 28), ("conv_pw_6", 1, (1, 1, 256, 512), 14)]
TABLE1 += [row for i in range(7, 12) for row in ((f"conv_dw_{i}", 1, (3, 3, 1, 512), 14),
                                                (f"conv_pw_{i}", 1, (1, 1, 512, 512), 14))]
TABLE1 += [("conv_dw_12", 2, (3, 3, 1, 512), 14), ("conv_pw_12", 1, (1, 1, 512, 1024), 7),
           ("conv_dw_13", 1, (3, 3, 1, 1024), 7), ("conv_pw_13", 1, (1, 1, 1024, 1024), 7),
           ("conv_preds", 1, (1024, 1000), 1)]  # avg pool 7x7, FC 1024x1000


def test_mobilenet_v1_layer_structure_matches_table1():
    rows = [r for r in layer_table(zoo.create("mobilenet_v1"), (224, 224, 3)) if r.kind in ("Conv", "Dense")]
    assert len(rows) == 28  # "counting depthwise and pointwise convolutions as separate layers, 28 layers"
    params = _flat(abstract_variables(zoo.create("mobilenet_v1"), (224, 224, 3))["params"])
    for row, (name, stride, shape, size) in zip(rows, TABLE1):
        assert row.path == name
        assert params[f"{name}/kernel"].shape == shape, name
        if len(shape) == 4:
            assert row.output_shape[1:] == (size // stride, size // stride, shape[-1]), name
    # convs without bias (BN follows); only the classifier has one
    assert [k for k in params if k.endswith("/bias") and not k.split("/")[0].endswith("_bn")] == ["conv_preds/bias"]


def test_mobilenet_v1_taps_follow_table1_output_sizes():
    taps = _taps(zoo.create("mobilenet_v1"))
    assert [taps[k][:2] for k in ("stem", "block1", "block3", "block5", "block11", "block13")] == \
        [(112, 112), (112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert taps["pre_logits"] == (1024,)


@pytest.mark.parametrize("alpha", [0.75, 0.5, 0.25, 0.3])
def test_mobilenet_v1_width_is_int_c_alpha(alpha):
    # Keras / paper: channels = int(c * alpha), no rounding to a multiple of 8.
    params = _flat(abstract_variables(zoo.create("mobilenet_v1", width_mult=alpha), (224, 224, 3))["params"])
    assert params["conv1/kernel"].shape[-1] == int(32 * alpha)
    for i, c in enumerate((64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024), start=1):
        assert params[f"conv_pw_{i}/kernel"].shape[-1] == int(c * alpha)
    assert params["conv_preds/kernel"].shape == (int(1024 * alpha), 1000)


def test_mobilenet_v1_defaults_are_keras():
    m = zoo.create("mobilenet_v1")
    assert (m.dropout, m.bn_epsilon, m.bn_momentum) == (1e-3, 1e-3, 0.99)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("width", [0, -0.5, "1"])
def test_width_mult_must_be_positive(name, width):
    with pytest.raises(ValueError, match="width_mult"):
        zoo.create(name, width_mult=width)


def test_mobilenet_v1_width_too_small_for_a_channel():
    with pytest.raises(ValueError, match="width_mult"):
        zoo.create("mobilenet_v1", width_mult=0.01)


# ---------------------------------------------------------------------- MobileNetV2 / V3

@pytest.mark.parametrize("name, kwargs, params", [  # torchvision parameter counts
    ("mobilenet_v2", dict(width_mult=0.5), 1_968_680),
    ("mobilenet_v2", dict(width_mult=1.4), 6_108_776),
    ("mobilenet_v3_large", dict(width_mult=0.75), 3_377_576),
    ("mobilenet_v3_small", dict(width_mult=0.5), 917_264),
])
def test_width_mult_rounding_matches_torchvision(name, kwargs, params):
    assert param_count(abstract_variables(zoo.create(name, **kwargs), (224, 224, 3))) == params


@pytest.mark.parametrize("name, tensors", [("mobilenet_v2", 262), ("mobilenet_v3_large", 266),
                                           ("mobilenet_v3_small", 210)])
def test_tensor_count_matches_torchvision_state_dict(name, tensors):
    v = abstract_variables(zoo.create(name), (224, 224, 3))
    assert len(_flat(v["params"])) + len(_flat(v["batch_stats"])) == tensors


def test_mobilenet_v2_names_are_torchvision():
    params = _flat(abstract_variables(zoo.create("mobilenet_v2"), (224, 224, 3))["params"])
    for key, shape in [("features_0_0/kernel", (3, 3, 3, 32)), ("features_0_1/scale", (32,)),
                       ("features_1/conv_0_0/kernel", (3, 3, 1, 32)),  # t = 1: no expansion
                       ("features_1/conv_1/kernel", (1, 1, 32, 16)), ("features_1/conv_2/scale", (16,)),
                       ("features_2/conv_0_0/kernel", (1, 1, 16, 96)), ("features_2/conv_1_0/kernel", (3, 3, 1, 96)),
                       ("features_2/conv_2/kernel", (1, 1, 96, 24)), ("features_2/conv_3/bias", (24,)),
                       ("features_18_0/kernel", (1, 1, 320, 1280)), ("classifier_1/kernel", (1280, 1000))]:
        assert params[key].shape == shape, key


def test_mobilenet_v3_names_and_se_width():
    params = _flat(abstract_variables(zoo.create("mobilenet_v3_large"), (224, 224, 3))["params"])
    # features_4: 24 -> expand 72, 5x5 dw, SE squeeze make_divisible(72 // 4, 8) = 24, project 40.
    for key, shape in [("features_4/block_0_0/kernel", (1, 1, 24, 72)), ("features_4/block_1_0/kernel", (5, 5, 1, 72)),
                       ("features_4/block_2/fc1/kernel", (1, 1, 72, 24)), ("features_4/block_2/fc1/bias", (24,)),
                       ("features_4/block_2/fc2/kernel", (1, 1, 24, 72)), ("features_4/block_2/fc2/bias", (72,)),
                       ("features_4/block_3_0/kernel", (1, 1, 72, 40)), ("features_4/block_3_1/scale", (40,)),
                       ("features_1/block_0_0/kernel", (3, 3, 1, 16)),  # no expansion: block_0 is the dw conv
                       ("features_16_0/kernel", (1, 1, 160, 960)),
                       ("classifier_0/kernel", (960, 1280)), ("classifier_3/kernel", (1280, 1000))]:
        assert params[key].shape == shape, key
    assert make_divisible(72 // 4, 8) == 24 and make_divisible(960 // 4, 8) == 240
    small = _flat(abstract_variables(zoo.create("mobilenet_v3_small"), (224, 224, 3))["params"])
    assert small["features_1/block_1/fc1/kernel"].shape == (1, 1, 16, 8)  # make_divisible(16 // 4, 8)
    assert small["classifier_0/kernel"].shape == (576, 1024)


def test_squeeze_excitation_matches_formula():
    x = jnp.asarray(_x(4))
    se = SqueezeExcitation(8, Ops())
    v = se.init(jax.random.key(0), x)
    p = v["params"]
    p = jax.tree.map(lambda a: a + 0.3, p)  # nonzero biases
    s = np.asarray(x).mean(axis=(1, 2))
    s = np.maximum(s @ np.asarray(p["fc1"]["kernel"])[0, 0] + np.asarray(p["fc1"]["bias"]), 0)
    s = s @ np.asarray(p["fc2"]["kernel"])[0, 0] + np.asarray(p["fc2"]["bias"])
    expected = np.asarray(x) * (np.clip(s + 3, 0, 6) / 6)[:, None, None, :]
    np.testing.assert_allclose(se.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, taps", [
    ("mobilenet_v2", dict(stem=(112, 112, 32), block1=(112, 112, 16), block3=(56, 56, 24), block6=(28, 28, 32),
                          block13=(14, 14, 96), block17=(7, 7, 320), last_conv=(7, 7, 1280), pre_logits=(1280,))),
    ("mobilenet_v3_large", dict(stem=(112, 112, 16), block1=(112, 112, 16), block3=(56, 56, 24), block6=(28, 28, 40),
                                block12=(14, 14, 112), block15=(7, 7, 160), last_conv=(7, 7, 960),
                                pre_logits=(1280,))),
    ("mobilenet_v3_small", dict(stem=(112, 112, 16), block1=(56, 56, 16), block3=(28, 28, 24), block8=(14, 14, 48),
                                block11=(7, 7, 96), last_conv=(7, 7, 576), pre_logits=(1024,))),
])
def test_mobilenet_taps(name, taps):
    assert _taps(zoo.create(name)) == taps


def _bn_settings(model, x):
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            seen.append((context.module.epsilon, context.module.momentum))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return set(seen)


@pytest.mark.parametrize("name, expected", [
    ("mobilenet_v3_large", (1e-3, 0.99)), ("mobilenet_v3_small", (1e-3, 0.99)),  # PyTorch eps 1e-3, momentum 0.01
    ("mobilenet_v2", (1e-5, 0.9)), ("mobilenet_v1", (1e-3, 0.99)), ("densenet121", (1e-5, 0.9)),
])
def test_bn_defaults_reach_every_layer(name, expected):
    model = zoo.create(name)
    assert (model.bn_epsilon, model.bn_momentum) == expected
    assert _bn_settings(model, jnp.zeros((1, 32, 32, 3))) == {expected}


def test_bn_overrides_reach_every_layer():
    model = zoo.create("mobilenet_v3_small", bn_epsilon=1e-4, bn_momentum=0.5)
    assert _bn_settings(model, jnp.zeros((1, 32, 32, 3))) == {(1e-4, 0.5)}


def _random_variables(abstract, seed=0):
    """Variables of the abstract tree filled with numpy draws of sensible scale (compiling ``init``
    costs far more than the forward pass; the initialisers are checked separately)."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        leaf = path[-1].key
        n = rng.standard_normal(a.shape).astype(np.float32)
        if leaf == "kernel":
            return n * np.sqrt(2.0 / math.prod(a.shape[:-1]))
        return {"scale": 1 + 0.1 * n, "var": 1 + 0.1 * np.abs(n)}.get(leaf, 0.1 * n)  # bias, mean

    return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.lru_cache(maxsize=None)
def _mobilenet_run(name):
    """One compiled program per model (32x32, batch 2): eval logits, train logits, updated
    batch_stats and the stem conv's output (for the running-statistics check)."""
    model = zoo.create(name, num_classes=7)
    x = _x()
    v = _random_variables(jax.eval_shape(lambda: model.init(jax.random.key(0), x)))

    @jax.jit
    def run(v, x):
        logits = model.apply(v, x)
        out, upd = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                               mutable=["batch_stats", "intermediates"],
                               capture_intermediates=lambda mdl, method: mdl.name == "features_0_0")
        return logits, out, upd["batch_stats"], upd["intermediates"]["features_0_0"]["__call__"][0]

    return (v, *run(v, x))


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_forward_train_and_eval(name):
    v, logits, out, stats, _ = _mobilenet_run(name)
    assert logits.shape == out.shape == (2, 7)
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(out)).all()
    assert not np.allclose(logits, out)  # batch statistics (and dropout) in train mode
    assert jax.tree.structure(stats) == jax.tree.structure(v["batch_stats"])


@pytest.mark.parametrize("name, momentum", [("mobilenet_v3_small", 0.01), ("mobilenet_v2", 0.1)])  # PyTorch convention
def test_running_stats_update_with_torch_momentum(name, momentum):
    v, _, _, stats, conv_out = _mobilenet_run(name)
    old = v["batch_stats"]["features_0_1"]["mean"]
    expected = (1 - momentum) * old + momentum * conv_out.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(stats["features_0_1"]["mean"], expected, rtol=1e-5, atol=1e-6)


def _initialisers(model, x):
    """{path: (module, kernel shape)} of every conv / dense layer, from an abstract init."""
    found = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if isinstance(mod, (nn.Conv, nn.Dense)) and context.method_name == "__call__":
            found["/".join(mod.path)] = (mod, mod.variables["params"]["kernel"].shape)
        return out

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return found


def _draw(init, shape):
    return np.asarray(init(jax.random.key(0), shape, jnp.float32))


@pytest.mark.parametrize("name, fc1, classifier", [("mobilenet_v2", None, "classifier_1"),
                                                   ("mobilenet_v3_small", "features_1/block_1/fc1", "classifier_3")])
def test_mobilenet_init_is_torchvision(name, fc1, classifier):
    layers = _initialisers(zoo.create(name), jnp.zeros((1, 32, 32, 3)))
    conv_inits = {mod.kernel_init for mod, _ in layers.values() if isinstance(mod, nn.Conv)}
    assert len(conv_inits) == 1  # one initialiser for every conv, depthwise and SE included:
    init = conv_inits.pop()  # kaiming_normal_(mode='fan_out'), torch fan_out = C_out * k * k (depthwise too)
    assert abs(_draw(init, (3, 3, 64, 512)).std() / math.sqrt(2.0 / (9 * 512)) - 1) < 0.05
    assert abs(_draw(init, (3, 3, 1, 4096)).std() / math.sqrt(2.0 / (9 * 4096)) - 1) < 0.05
    if fc1:  # SE convs carry a zero-initialised bias
        assert layers[fc1][0].use_bias and not _draw(layers[fc1][0].bias_init, (8,)).any()
    head = layers[classifier][0]  # nn.init.normal_(weight, 0, 0.01), zeros_(bias)
    assert abs(_draw(head.kernel_init, (1280, 1000)).std() / 0.01 - 1) < 0.02
    assert not _draw(head.bias_init, (1000,)).any()


@pytest.mark.parametrize("override, pattern", [
    (dict(arch="medium"), "arch.*allowed"),
    (dict(dropout=-0.1), "dropout"),
])
def test_mobilenet_v3_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        MobileNetV3(**override)
