"""EfficientNet against Tan & Le 2019 (Table 1, compound scaling) and EfficientNetV2 against Tan & Le 2021
(Table 4), with torchvision's names, key counts, BatchNorm settings, dropout and stochastic-depth rates;
drop-path in a whole network (train differs from eval, eval deterministic, rate 0 the identity); the
feature taps, features by tap name and Grad-CAM's default layer; the option errors.

Shapes and parameters use jax.eval_shape; the one compiled program is a small EfficientNet at 32x32.
Figures marked "torchvision" were read off torchvision 0.28 (the reference implementation)."""
import functools
import math

import flax.linen as nn
import jax
import numpy as np
import pytest

import zoo
from helpers import inner_loop_sample, abstract_variables, batchnorm_settings, draw, flat, images, key, layer_modules, reference
from zoo import convert
from zoo.blocks import InvertedResidual
from zoo.compiling import compile_once
from zoo.efficientnet import EfficientNet


def _params(name, **overrides):
    return {k: v.shape for k, v in flat(abstract_variables(name, **overrides)["params"]).items()}


def _blocks(params, stage):
    return sorted({p.split("/")[0] for p in params if p.startswith(f"features_{stage}_")},
                  key=lambda b: int(b.rsplit("_", 1)[1]))


def _taps(name, size):
    return {k: s[1:] for k, s in zoo.feature_names(zoo.create(name), (size, size, 3)).items()}


# Tan & Le 2019, Table 1 (EfficientNet-B0), stages 2-8: (expansion of MBConvN, kernel, input resolution,
# output channels, layers). Stage 1: conv 3x3, 224 -> 32 channels; stage 9: conv 1x1, 7x7, 1280, pool, FC.
TABLE1 = ((1, 3, 112, 16, 1), (6, 3, 112, 24, 2), (6, 5, 56, 40, 2), (6, 3, 28, 80, 3), (6, 5, 14, 112, 3),
          (6, 5, 14, 192, 4), (6, 3, 7, 320, 1))


def test_b0_follows_table1():
    params = _params("efficientnet_b0")
    assert params["features_0_0/kernel"] == (3, 3, 3, 32)
    inp = 32
    for stage, (t, k, _, out, layers) in enumerate(TABLE1, start=1):
        blocks = _blocks(params, stage)
        assert len(blocks) == layers, stage
        for j, b in enumerate(blocks):
            c = inp if j == 0 else out
            dw = "block_1_0" if t > 1 else "block_0_0"  # MBConv1: no expansion conv
            assert params[f"{b}/{dw}/kernel"] == (k, k, 1, c * t), b
            assert params[f"{b}/block_{2 if t > 1 else 1}/fc1/kernel"] == (1, 1, c * t, max(1, c // 4)), b  # SE 0.25
        inp = out
    assert params["features_8_0/kernel"] == (1, 1, 320, 1280) and params["classifier_1/kernel"] == (1280, 1000)
    taps = _taps("efficientnet_b0", 224)
    assert taps["stem"] == (112, 112, 32)
    resolutions = [row[2] for row in TABLE1[1:]] + [7]  # a stage's output is the next stage's input
    assert [taps[f"stage{i}"] for i in range(1, 8)] == [(r, r, row[3]) for r, row in zip(resolutions, TABLE1)]
    assert (taps["last_conv"], taps["pre_logits"]) == ((7, 7, 1280), (1280,))
    assert list(taps) == ["stem", *(f"stage{i}" for i in range(1, 8)), "last_conv", "pre_logits"]


@pytest.mark.parametrize("name, stem, stages, last", [  # torchvision: (blocks, output channels) per stage
    ("efficientnet_b4", 48, ((2, 24), (4, 32), (4, 56), (6, 112), (6, 160), (8, 272), (2, 448)), 1792),
    ("efficientnet_b7", 64, ((4, 32), (7, 48), (7, 80), (10, 160), (10, 224), (13, 384), (4, 640)), 2560),
])
def test_compound_scaling_of_width_and_depth(name, stem, stages, last):
    params = _params(name)
    assert params["features_0_0/kernel"][-1] == stem and params[f"features_{len(stages) + 1}_0/kernel"][-1] == last
    for stage, (n, out) in enumerate(stages, start=1):
        blocks = _blocks(params, stage)
        project = max((k for k in params if k.startswith(f"{blocks[-1]}/") and k.endswith("_0/kernel")),
                      key=lambda k: int(k.split("/")[1].split("_")[1]))  # the block's last conv
        assert len(blocks) == n and params[project][-1] == out


@pytest.mark.integration
def test_v2_s_follows_table4():
    params = _params("efficientnet_v2_s")
    # Fused-MBConv1 (stage 1): one 3x3 conv per block, 24 -> 24, no SE.
    assert {k: v for k, v in params.items() if k.startswith("features_1_0/") and k.endswith("kernel")} == \
        {"features_1_0/block_0_0/kernel": (3, 3, 24, 24)}
    # Fused-MBConv4 (stage 2): 3x3/2 conv 24 -> 96, 1x1 project to 48, no SE.
    assert {k: v for k, v in params.items() if k.startswith("features_2_0/") and k.endswith("kernel")} == \
        {"features_2_0/block_0_0/kernel": (3, 3, 24, 96), "features_2_0/block_1_0/kernel": (1, 1, 96, 48)}
    # MBConv4 with SE 0.25 (stage 4): 64 -> 256 -> 3x3 depthwise -> SE (16) -> 128.
    assert {k: v for k, v in params.items() if k.startswith("features_4_0/") and k.endswith("kernel")} == \
        {"features_4_0/block_0_0/kernel": (1, 1, 64, 256), "features_4_0/block_1_0/kernel": (3, 3, 1, 256),
         "features_4_0/block_2/fc1/kernel": (1, 1, 256, 16), "features_4_0/block_2/fc2/kernel": (1, 1, 16, 256),
         "features_4_0/block_3_0/kernel": (1, 1, 256, 128)}
    assert [len(_blocks(params, s)) for s in range(1, 7)] == [2, 4, 4, 6, 9, 15]
    taps = _taps("efficientnet_v2_s", 384)
    assert taps == {"stem": (192, 192, 24), "stage1": (192, 192, 24), "stage2": (96, 96, 48), "stage3": (48, 48, 64),
                    "stage4": (24, 24, 128), "stage5": (24, 24, 160), "stage6": (12, 12, 256),
                    "last_conv": (12, 12, 1280), "pre_logits": (1280,)}


@pytest.mark.parametrize("name, keys", inner_loop_sample([("efficientnet_b0", 360), ("efficientnet_b7", 1200),
                                                          ("efficientnet_v2_s", 782)], {("efficientnet_b0", 360)}))
def test_state_dict_has_torchvisions_key_count(name, keys):
    assert len(convert.state_dict_shapes(name)) == keys  # torchvision: len(model.state_dict())


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_default_input_size_and_grad_cam_layer(name):
    size = reference()["models"][name]["input_size"]
    assert zoo.model_info(name).input_shape == (size, size, 3)
    assert zoo.inspect.default_cam_layer(zoo.create(name), (size, size, 3)) == "last_conv"


@pytest.mark.parametrize("name, bn, dropout", [  # torchvision: (eps, Flax momentum = 1 - PyTorch momentum)
    ("efficientnet_b0", (1e-5, 0.9), 0.2), ("efficientnet_b1", (1e-5, 0.9), 0.2),
    ("efficientnet_b2", (1e-5, 0.9), 0.3), ("efficientnet_b3", (1e-5, 0.9), 0.3),
    ("efficientnet_b4", (1e-5, 0.9), 0.4), ("efficientnet_b5", (1e-3, 0.99), 0.4),
    ("efficientnet_b6", (1e-3, 0.99), 0.5), ("efficientnet_b7", (1e-3, 0.99), 0.5),
    ("efficientnet_v2_s", (1e-3, 0.9), 0.2), ("efficientnet_v2_m", (1e-3, 0.9), 0.3),
    ("efficientnet_v2_l", (1e-3, 0.9), 0.4),
])
def test_batchnorm_and_dropout_per_variant(name, bn, dropout):
    model = zoo.create(name)
    assert ((model.bn_epsilon, model.bn_momentum), model.dropout, model.stochastic_depth_prob) == (bn, dropout, 0.2)


@pytest.mark.integration
def test_variant_defaults_reach_every_layer_and_can_be_overridden():
    assert batchnorm_settings(zoo.create("efficientnet_b5"), (32, 32, 3)) == {(1e-3, 0.99)}
    model = zoo.create("efficientnet_b5", bn_epsilon=1e-5, bn_momentum=0.9, dropout=0.0)
    assert batchnorm_settings(model, (32, 32, 3)) == {(1e-5, 0.9)} and model.dropout == 0.0


def _drop_path_rates(model):
    """The drop-path rate of every block, in forward order (read while init is traced)."""
    rates = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, InvertedResidual) and context.method_name == "__call__":
            rates.append(context.module.drop_path)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        abstract_variables(model, (32, 32, 3))
    return rates


@pytest.mark.parametrize("name, blocks", inner_loop_sample([("efficientnet_b0", 16), ("efficientnet_v2_s", 40)],
                                                          {("efficientnet_b0", 16)}))
def test_stochastic_depth_rises_linearly_over_the_blocks(name, blocks):
    # torchvision: block i of N drops its branch with probability 0.2 * i / N (b0: 0, 0.0125, ..., 0.1875)
    np.testing.assert_allclose(_drop_path_rates(zoo.create(name)), [0.2 * i / blocks for i in range(blocks)])
    assert _drop_path_rates(zoo.create(name, stochastic_depth_prob=0.0)) == [0.0] * blocks


def test_init_is_torchvisions():
    layers = layer_modules(zoo.create("efficientnet_b0"), (32, 32, 3))
    conv_inits = {m.kernel_init for m in layers.values() if isinstance(m, nn.Conv)}
    assert len(conv_inits) == 1  # kaiming_normal_(mode='fan_out') for every conv, depthwise and SE included
    assert abs(draw(conv_inits.pop(), (3, 3, 1, 4096)).std() / math.sqrt(2.0 / (9 * 4096)) - 1) < 0.05
    head = layers["classifier_1"]  # uniform_(-1 / sqrt(out_features), 1 / sqrt(out_features)), bias zeros
    w = draw(head.kernel_init, (1280, 1000))
    assert np.abs(w).max() <= 1 / math.sqrt(1000) and abs(w.std() * math.sqrt(3 * 1000) - 1) < 0.02
    assert not draw(head.bias_init, (1000,)).any()


# ---------------------------------------------------------------------- a small network, compiled

SMALL = dict(width_mult=0.25, depth_mult=0.5, norm="group", dropout=0.0, num_classes=5)  # 10 blocks (3 with a
# shortcut), GroupNorm, no dropout: in train mode only drop-path differs from eval mode.


@functools.lru_cache(maxsize=None)
def _small():
    model = EfficientNet(stochastic_depth_prob=0.5, **SMALL)
    x = images((8, 32, 32, 3))
    return model, x, zoo.init(model, x.shape[1:], rng=key(0))


@functools.lru_cache(maxsize=None)
def _small_run():
    """``{key: (eval, train, train at rate 0)}`` of the small EfficientNet at 32x32, batch 8, for dropout
    keys 1 and 2: one program (fast compile options), run twice."""
    model, x, variables = _small()
    no_drop = model.clone(stochastic_depth_prob=0.0)

    def run(v, x, k):
        return (model.apply(v, x, rngs={"dropout": k}), model.apply(v, x, train=True, rngs={"dropout": k}),
                no_drop.apply(v, x, train=True, rngs={"dropout": k}))

    program = compile_once(run, variables, x, key(1))
    return {i: program(variables, x, key(i)) for i in (1, 2)}


@pytest.mark.integration
def test_drop_path_in_train_mode_only():
    (eval1, train1, rate0), (eval2, train2, _) = _small_run()[1], _small_run()[2]
    np.testing.assert_array_equal(eval1, eval2)  # eval: deterministic, the dropout rng is ignored
    np.testing.assert_array_equal(rate0, eval1)  # rate 0: train mode computes what eval mode does
    assert not np.allclose(train1, eval1) and not np.allclose(train1, train2)  # branches dropped, per key
    assert np.isfinite(np.asarray(eval1)).all() and eval1.shape == (8, 5)


@pytest.mark.integration
def test_grad_cam_at_its_default_layer_and_features_by_name():
    model, x, variables = _small()
    cam = zoo.inspect.grad_cam(model, variables, x[:2], class_index=[1, 2], upsample=False)
    assert zoo.inspect.default_cam_layer(model, (32, 32, 3)) == "stage5"  # 2x2; stage6, 7, last_conv are 1x1
    assert cam.shape == (2, 2, 2) and np.isfinite(cam).all() and (cam >= 0).all() and cam.any()
    layers = ["stem", "stage4", "pre_logits", "features_2_0/block_1_0"]
    feats = jax.eval_shape(lambda v, x: zoo.features(model, v, x, layers=layers), variables, x)
    assert [feats[k].shape for k in layers] == [(8, 16, 16, 8), (8, 2, 2, 24), (8, 320), (8, 8, 8, 48)]  # 4 x 80


@pytest.mark.parametrize("override, pattern", [
    (dict(arch="v3"), r"^arch='v3': allowed values are \('v1', 'v2_s', 'v2_m', 'v2_l'\)$"),
    (dict(width_mult=0), r"^width_mult=0: must be a number > 0$"),
    (dict(depth_mult=-1.0), r"^depth_mult=-1.0: must be a number > 0$"),
    (dict(stochastic_depth_prob=1.0), r"^stochastic_depth_prob=1.0: must be a probability in \[0, 1\)$"),
    (dict(dropout=-0.1), r"^dropout=-0.1: must be a probability in \[0, 1\)$"),
])
def test_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        EfficientNet(**override)


def test_a_variant_fixes_its_scaling():
    with pytest.raises(ValueError, match=r"efficientnet_b3 fixes width_mult=1.2; build zoo.efficientnet.EfficientNet"):
        zoo.create("efficientnet_b3", width_mult=2.0)
