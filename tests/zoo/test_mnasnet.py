"""MnasNet against torchvision's MNASNet (the B1 variant of Tan et al. 2019): the stack table, the
depth-scaled stem and channels per alpha, torchvision's names and key count, BatchNorm momentum
0.9997, init, the feature taps and Grad-CAM's default layer, the alpha error.

Shapes and parameters use jax.eval_shape. Figures marked "torchvision" were read off torchvision 0.28
(``torchvision.models.mnasnet._get_depths`` and ``state_dict()``)."""
import math

import flax.linen as nn
import jax
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, batchnorm_settings, draw, flat, images, layer_modules
from zoo import convert
from zoo.mnasnet import MNASNet

# torchvision's _get_depths(alpha): stem conv, stem 1x1, then the six stacks.
DEPTHS = {0.5: (16, 8, 16, 24, 40, 48, 96, 160), 0.75: (24, 16, 24, 32, 64, 72, 144, 240),
          1.0: (32, 16, 24, 40, 80, 96, 192, 320), 1.3: (40, 24, 32, 56, 104, 128, 248, 416)}
# torchvision's _stack calls: (kernel, stride, expansion, repeats) of layers_8 .. layers_13.
STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))


@pytest.mark.parametrize("name, alpha", [("mnasnet0_5", 0.5), ("mnasnet0_75", 0.75), ("mnasnet1_0", 1.0),
                                         ("mnasnet1_3", 1.3)])
def test_channels_kernels_and_repeats_follow_torchvision(name, alpha):
    params = {k: v.shape for k, v in flat(abstract_variables(name)["params"]).items()}
    d = DEPTHS[alpha]
    assert params["layers_0/kernel"] == (3, 3, 3, d[0])       # depth-scaled stem (torchvision version 2)
    assert params["layers_3/kernel"] == (3, 3, 1, d[0])       # depthwise
    assert params["layers_6/kernel"] == (1, 1, d[0], d[1])
    inp = d[1]
    for i, ((k, _, t, n), out) in enumerate(zip(STACKS, d[2:])):
        blocks = sorted({p.split("/")[0] for p in params if p.startswith(f"layers_{8 + i}_")})
        assert blocks == [f"layers_{8 + i}_{j}" for j in range(n)]
        for j in range(n):
            c = inp if j == 0 else out
            assert params[f"layers_{8 + i}_{j}/layers_0/kernel"] == (1, 1, c, c * t)
            assert params[f"layers_{8 + i}_{j}/layers_3/kernel"] == (k, k, 1, c * t)
            assert params[f"layers_{8 + i}_{j}/layers_6/kernel"] == (1, 1, c * t, out)
        inp = out
    assert params["layers_14/kernel"] == (1, 1, d[-1], 1280) and params["classifier_1/kernel"] == (1280, 1000)


@pytest.mark.parametrize("name", ["mnasnet0_5", "mnasnet1_3"])
def test_state_dict_has_torchvisions_key_count(name):
    assert len(convert.state_dict_shapes(name)) == 314  # torchvision: len(mnasnet(...).state_dict())


def test_taps_and_grad_cam_layer():
    taps = zoo.feature_names(zoo.create("mnasnet1_0"), (224, 224, 3))  # in forward order
    assert {k: s[1:] for k, s in taps.items()} == {
        "stem": (112, 112, 16), "stage1": (56, 56, 24), "stage2": (28, 28, 40), "stage3": (14, 14, 80),
        "stage4": (14, 14, 96), "stage5": (7, 7, 192), "stage6": (7, 7, 320), "last_conv": (7, 7, 1280),
        "pre_logits": (1280,)}
    assert list(taps) == ["stem", *(f"stage{i}" for i in range(1, 7)), "last_conv", "pre_logits"]
    assert zoo.inspect.default_cam_layer(zoo.create("mnasnet1_0")) == "last_conv"


def test_features_by_tap_name():
    model = zoo.create("mnasnet0_5", num_classes=5)
    x = images((2, 64, 64, 3))
    variables = abstract_variables(model, x.shape[1:])
    feats = jax.eval_shape(lambda v, x: zoo.features(model, v, x, layers=["stem", "stage3", "pre_logits"]),
                           variables, x)
    assert [feats[k].shape for k in ("stem", "stage3", "pre_logits")] == [(2, 32, 32, 8), (2, 4, 4, 40), (2, 1280)]


def test_bn_momentum_is_torchvisions_reaching_every_layer():
    model = zoo.create("mnasnet1_0")
    assert (model.bn_momentum, model.bn_epsilon) == (0.9997, 1e-5)  # PyTorch momentum 1 - 0.9997
    assert batchnorm_settings(model, (32, 32, 3)) == {(1e-5, 0.9997)}
    assert batchnorm_settings(zoo.create("mnasnet1_0", bn_momentum=0.9), (32, 32, 3)) == {(1e-5, 0.9)}


def test_init_is_torchvisions():
    layers = layer_modules(zoo.create("mnasnet0_5"), (32, 32, 3))
    conv_inits = {m.kernel_init for m in layers.values() if isinstance(m, nn.Conv)}
    assert len(conv_inits) == 1  # kaiming_normal_(mode='fan_out', nonlinearity='relu') for every conv
    assert abs(draw(conv_inits.pop(), (3, 3, 1, 4096)).std() / math.sqrt(2.0 / (9 * 4096)) - 1) < 0.05
    head = layers["classifier_1"]  # kaiming_uniform_(mode='fan_out', nonlinearity='sigmoid'): U(+-sqrt(3 / 1000))
    w = draw(head.kernel_init, (1280, 1000))
    assert np.abs(w).max() <= math.sqrt(3 / 1000) and abs(w.std() / math.sqrt(1 / 1000) - 1) < 0.02
    assert not draw(head.bias_init, (1000,)).any()


def test_dropout_before_the_classifier():
    assert zoo.create("mnasnet1_0").dropout == 0.2 and zoo.create("mnasnet1_0", dropout=0.5).dropout == 0.5


@pytest.mark.parametrize("alpha", [0.6, 2.0, 0, "1.0"])
def test_unknown_alpha_names_the_allowed_values(alpha):
    with pytest.raises(ValueError, match=rf"^alpha={alpha!r}: allowed values are \(0.5, 0.75, 1.0, 1.3\)$"):
        MNASNet(alpha=alpha)


def test_a_variant_fixes_its_alpha():
    with pytest.raises(ValueError, match=r"mnasnet1_0 fixes alpha=1.0; build zoo.mnasnet.MNASNet directly"):
        zoo.create("mnasnet1_0", alpha=0.5)
