"""SqueezeNet 1.0 / 1.1 against Iandola et al. 2016 (Table 1's fire modules, the max-pool positions,
conv10 as the classifier, no BatchNorm) and the authors' v1.1 release (3x3 conv1 with 64 filters,
earlier pooling), torchvision's names and minimum sizes. Shapes use jax.eval_shape."""
import pytest

import zoo
from helpers import abstract_variables, flat, forward_shapes
from zoo import inspect as zi

# Table 1 of the paper: fire module -> (s1x1, e1x1, e3x3), fire2 .. fire9.
FIRES = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128), (48, 192, 192), (48, 192, 192),
         (64, 256, 256), (64, 256, 256)]
# torchvision's features indices of fire2..fire9 (max-pools between them) and conv1 (filters, kernel).
LAYOUT = {"squeezenet1_0": ((3, 4, 5, 7, 8, 9, 10, 12), (96, 7)), "squeezenet1_1": ((3, 4, 6, 7, 9, 10, 11, 12), (64, 3))}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_fire_modules_are_table1(name):
    indices, (filters, kernel) = LAYOUT[name]
    v = abstract_variables(name)
    assert set(v) == {"params"}   # no BatchNorm: every conv has a bias
    params = v["params"]
    assert params["features_0"]["kernel"].shape == (kernel, kernel, 3, filters)
    c_in = filters
    for i, (s, e1, e3) in zip(indices, FIRES):
        p = {k: (a["kernel"].shape, a["bias"].shape) for k, a in params[f"features_{i}"].items()}
        assert p == {"squeeze": ((1, 1, c_in, s), (s,)), "expand1x1": ((1, 1, s, e1), (e1,)),
                     "expand3x3": ((3, 3, s, e3), (e3,))}, i
        c_in = e1 + e3
    assert params["classifier_1"]["kernel"].shape == (1, 1, 512, 1000)   # conv10: a 1x1 conv, no dense layer
    assert sorted(params) == sorted([f"features_{i}" for i in (0, *indices)] + ["classifier_1"])


def test_pooling_positions_at_224():
    """1.0: max-pools after conv1, fire4, fire8; 1.1: after conv1, fire3, fire5 (3x3/2, ceil mode)."""
    assert forward_shapes("squeezenet1_0")[0] == {"stem": (1, 54, 54, 96), "fire4": (1, 54, 54, 256),
                                                  "fire8": (1, 27, 27, 512), "pre_logits": (1, 13, 13, 512)}
    assert forward_shapes("squeezenet1_1")[0] == {"stem": (1, 55, 55, 64), "fire3": (1, 55, 55, 128),
                                                  "fire5": (1, 27, 27, 256), "pre_logits": (1, 13, 13, 512)}


@pytest.mark.parametrize("name, smallest", [("squeezenet1_0", 21), ("squeezenet1_1", 17)])
def test_minimum_input_sizes_are_torchvisions(name, smallest):
    assert forward_shapes(name, (smallest, smallest, 3))[1] == (1, 1000)
    with pytest.raises(ValueError, match=rf"^SqueezeNet: input {smallest - 1}x{smallest - 1} is too small, expected "
                                         rf"\(B, H, W, 3\) with H, W >={smallest}"):
        abstract_variables(name, (smallest - 1, smallest - 1, 3))


def test_receptive_fields_and_grad_cam_layer():
    """1.0: conv1 7/2 -> 7, pool 3/2 -> 11 (jump 4); each fire adds 2 x jump (its 3x3 expand): 19, 27, 35."""
    model = zoo.create("squeezenet1_0")
    rf = zi.receptive_fields(model)
    assert [(rf[n].size[0], rf[n].jump[0]) for n in ("stem", "features_3", "features_4", "fire4")] == \
        [(11, 4), (19, 4), (27, 4), (35, 4)]
    assert zi.default_cam_layer(model) == "pre_logits"   # fire9's map, what conv10 sees


def test_options():
    model = zoo.create("squeezenet1_1", num_classes=10, dropout=0.0)
    assert flat(abstract_variables(model, (32, 32, 3))["params"])["classifier_1/kernel"].shape == (1, 1, 512, 10)
    with pytest.raises(ValueError, match=r"^version='1_2': allowed values are \('1_0', '1_1'\)$"):
        zoo.squeezenet.SqueezeNet(version="1_2")
    with pytest.raises(ValueError, match=r"^squeezenet1_1 fixes version='1_1'"):
        zoo.create("squeezenet1_1", version="1_0")
