"""MobileNet v1 against Howard et al. 2017 (Table 1 layer by layer, the width multiplier, Keras
defaults) and MobileNetV2 / V3 against their papers' tables and torchvision (names, tensor counts,
width_mult rounding, squeeze-excitation, init, BatchNorm defaults and running statistics).

Shapes and parameters use jax.eval_shape; compiled passes use 32x32 inputs, batch 2.
Figures marked "torchvision" were read off torchvision 0.28 (the reference implementation).
"""
import functools
import math

import flax.linen as nn
import jax
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, batchnorm_settings, draw, flat, forward_shapes, images, inner_loop_sample, \
    key, layer_modules, random_variables, run_once
from zoo.layers import make_divisible
from zoo.mobilenet import MobileNetV3
from zoo.summary import layer_table, param_count


def _taps(name, **overrides):
    """{tap: shape of one image} at 224x224."""
    return {k: s[1:] for k, s in forward_shapes(name, **overrides)[0].items()}


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
    params = flat(abstract_variables("mobilenet_v1")["params"])
    for row, (name, stride, shape, size) in zip(rows, TABLE1):
        assert row.path == name
        assert params[f"{name}/kernel"].shape == shape, name
        if len(shape) == 4:
            assert row.output_shape[1:] == (size // stride, size // stride, shape[-1]), name
    # convs without bias (BN follows); only the classifier has one
    assert [k for k in params if k.endswith("/bias") and not k.split("/")[0].endswith("_bn")] == ["conv_preds/bias"]


def test_mobilenet_v1_taps_follow_table1_output_sizes():
    taps = _taps("mobilenet_v1")
    assert [taps[k][:2] for k in ("stem", "block1", "block3", "block5", "block11", "block13")] == \
        [(112, 112), (112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert taps["pre_logits"] == (1024,)


@pytest.mark.parametrize("alpha", [0.75, 0.5, 0.25, 0.3])
def test_mobilenet_v1_width_is_int_c_alpha(alpha):
    # Keras / paper: channels = int(c * alpha), no rounding to a multiple of 8.
    params = flat(abstract_variables("mobilenet_v1", width_mult=alpha)["params"])
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
    assert param_count(abstract_variables(name, **kwargs)) == params


@pytest.mark.parametrize("name, tensors", [("mobilenet_v2", 262), ("mobilenet_v3_large", 266),
                                           ("mobilenet_v3_small", 210)])
def test_tensor_count_matches_torchvision_state_dict(name, tensors):
    v = abstract_variables(name)
    assert len(flat(v["params"])) + len(flat(v["batch_stats"])) == tensors


def test_mobilenet_v2_names_are_torchvision():
    params = flat(abstract_variables("mobilenet_v2")["params"])
    for name, shape in [("features_0_0/kernel", (3, 3, 3, 32)), ("features_0_1/scale", (32,)),
                       ("features_1/conv_0_0/kernel", (3, 3, 1, 32)),  # t = 1: no expansion
                       ("features_1/conv_1/kernel", (1, 1, 32, 16)), ("features_1/conv_2/scale", (16,)),
                       ("features_2/conv_0_0/kernel", (1, 1, 16, 96)), ("features_2/conv_1_0/kernel", (3, 3, 1, 96)),
                       ("features_2/conv_2/kernel", (1, 1, 96, 24)), ("features_2/conv_3/bias", (24,)),
                       ("features_18_0/kernel", (1, 1, 320, 1280)), ("classifier_1/kernel", (1280, 1000))]:
        assert params[name].shape == shape, name


def test_mobilenet_v3_names_and_se_width():
    params = flat(abstract_variables("mobilenet_v3_large")["params"])
    # features_4: 24 -> expand 72, 5x5 dw, SE squeeze make_divisible(72 // 4, 8) = 24, project 40.
    for name, shape in [("features_4/block_0_0/kernel", (1, 1, 24, 72)), ("features_4/block_1_0/kernel", (5, 5, 1, 72)),
                       ("features_4/block_2/fc1/kernel", (1, 1, 72, 24)), ("features_4/block_2/fc1/bias", (24,)),
                       ("features_4/block_2/fc2/kernel", (1, 1, 24, 72)), ("features_4/block_2/fc2/bias", (72,)),
                       ("features_4/block_3_0/kernel", (1, 1, 72, 40)), ("features_4/block_3_1/scale", (40,)),
                       ("features_1/block_0_0/kernel", (3, 3, 1, 16)),  # no expansion: block_0 is the dw conv
                       ("features_16_0/kernel", (1, 1, 160, 960)),
                       ("classifier_0/kernel", (960, 1280)), ("classifier_3/kernel", (1280, 1000))]:
        assert params[name].shape == shape, name
    assert make_divisible(72 // 4, 8) == 24 and make_divisible(960 // 4, 8) == 240
    small = flat(abstract_variables("mobilenet_v3_small")["params"])
    assert small["features_1/block_1/fc1/kernel"].shape == (1, 1, 16, 8)  # make_divisible(16 // 4, 8)
    assert small["classifier_0/kernel"].shape == (576, 1024)


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
    assert _taps(name) == taps


@pytest.mark.parametrize("name, expected", [
    ("mobilenet_v3_large", (1e-3, 0.99)), ("mobilenet_v3_small", (1e-3, 0.99)),  # PyTorch eps 1e-3, momentum 0.01
    ("mobilenet_v2", (1e-5, 0.9)), ("mobilenet_v1", (1e-3, 0.99)),
])
def test_bn_defaults_reach_every_layer(name, expected):
    model = zoo.create(name)
    assert (model.bn_epsilon, model.bn_momentum) == expected
    assert batchnorm_settings(model, (32, 32, 3)) == {expected}


def test_bn_overrides_reach_every_layer():
    model = zoo.create("mobilenet_v3_small", bn_epsilon=1e-4, bn_momentum=0.5)
    assert batchnorm_settings(model, (32, 32, 3)) == {(1e-4, 0.5)}


@functools.lru_cache(maxsize=None)
def _mobilenet_run(name):
    """One compiled program per model (32x32, batch 2): eval logits, train logits, updated
    batch_stats and the stem conv's output (for the running-statistics check). Running statistics
    start away from 0 / 1, so that the update's (1 - momentum) * old term shows."""
    model = zoo.create(name, num_classes=7)
    x = images((2, 32, 32, 3))
    v = random_variables(model, x.shape[1:])
    rng = np.random.default_rng(1)
    v["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, a: a * (1 + 0.1 * np.abs(rng.standard_normal(a.shape, np.float32))) if path[-1].key == "var"
        else a + 0.1 * rng.standard_normal(a.shape, np.float32), v["batch_stats"])

    def run(v, x):
        logits = model.apply(v, x)
        out, upd = model.apply(v, x, train=True, rngs={"dropout": key(1)},
                               mutable=["batch_stats", "intermediates"],
                               capture_intermediates=lambda mdl, method: mdl.name == "features_0_0")
        return logits, out, upd["batch_stats"], upd["intermediates"]["features_0_0"]["__call__"][0]

    return (v, *run_once(run, v, x))


@pytest.mark.parametrize("name", inner_loop_sample(["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]))
def test_forward_train_and_eval(name):
    v, logits, out, stats, _ = _mobilenet_run(name)
    assert logits.shape == out.shape == (2, 7)
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(out)).all()
    assert not np.allclose(logits, out)  # batch statistics (and dropout) in train mode
    assert jax.tree.structure(stats) == jax.tree.structure(v["batch_stats"])


@pytest.mark.parametrize("name, momentum", inner_loop_sample([("mobilenet_v3_small", 0.01), ("mobilenet_v2", 0.1)],
                                                              {("mobilenet_v3_small", 0.01)}))  # PyTorch convention
def test_running_stats_update_with_torch_momentum(name, momentum):
    v, _, _, stats, conv_out = _mobilenet_run(name)
    old = v["batch_stats"]["features_0_1"]["mean"]
    assert np.abs(old).min() > 0  # the (1 - momentum) * old term is tested
    expected = (1 - momentum) * old + momentum * conv_out.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(stats["features_0_1"]["mean"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, fc1, classifier", [("mobilenet_v2", None, "classifier_1"),
                                                   ("mobilenet_v3_small", "features_1/block_1/fc1", "classifier_3")])
def test_mobilenet_init_is_torchvision(name, fc1, classifier):
    layers = layer_modules(zoo.create(name), (32, 32, 3))
    conv_inits = {mod.kernel_init for mod in layers.values() if isinstance(mod, nn.Conv)}
    assert len(conv_inits) == 1  # one initialiser for every conv, depthwise and SE included:
    init = conv_inits.pop()  # kaiming_normal_(mode='fan_out'), torch fan_out = C_out * k * k (depthwise too)
    assert abs(draw(init, (3, 3, 64, 512)).std() / math.sqrt(2.0 / (9 * 512)) - 1) < 0.05
    assert abs(draw(init, (3, 3, 1, 4096)).std() / math.sqrt(2.0 / (9 * 4096)) - 1) < 0.05
    if fc1:  # SE convs carry a zero-initialised bias
        assert layers[fc1].use_bias and not draw(layers[fc1].bias_init, (8,)).any()
    head = layers[classifier]  # nn.init.normal_(weight, 0, 0.01), zeros_(bias)
    assert abs(draw(head.kernel_init, (1280, 1000)).std() / 0.01 - 1) < 0.02
    assert not draw(head.bias_init, (1000,)).any()


@pytest.mark.parametrize("override, pattern", [
    (dict(arch="medium"), "arch.*allowed"),
    (dict(dropout=-0.1), "dropout"),
])
def test_mobilenet_v3_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        MobileNetV3(**override)
