"""Receptive fields from the traced architecture (zoo.inspect.receptive_fields), checked against the
hand-computed r / jump / start recursion of the notes and the papers' networks; the per-primitive
rule table and what happens to a primitive it has no rule for."""
import importlib
import warnings

import flax.linen as nn
import jax
import pytest

import zoo
from helpers import random_variables
from zoo import inspect as zi
from zoo.inspect import field_rules
from zoo.layers import Ops, avg_pool

def _sizes(rf, names):
    return [rf[n].size[0] for n in names]


def test_receptive_fields_of_lenet5_match_hand_computation():
    # conv 5x5 pad 2 -> 5; pool 2/2 -> 6 (jump 2); conv 5x5 -> 6 + 4*2 = 14; pool -> 16 (jump 4);
    # flatten + fc1 sees the whole 5x5 map: 16 + 4*4 = 32, centred on the 28x28 input (13.5)
    rf = zi.receptive_fields(zoo.create("lenet5"))
    expected = {"c1": (5, 1, 0), "s2": (6, 2, 0.5), "c3": (14, 2, 4.5), "s4": (16, 4, 5.5)}
    for name, (r, j, start) in expected.items():
        assert (rf[name].size, rf[name].jump, rf[name].start) == ((r, r), (j, j), (start, start)), name
        assert rf[name].spatial and rf[name].kind == "tap"
    assert rf["conv1"].size == (5, 5) and rf["conv2"].size == (14, 14) and rf["conv2"].kind == "module"
    assert rf["max_pool1"].size == (6, 6) and rf["max_pool2"].kind == "pool"
    for name in ("c5", "fc1", "pre_logits"):
        assert not rf[name].spatial and rf[name].size == (32, 32) and rf[name].start == (13.5, 13.5)
    names = list(rf)
    assert names.index("c1") < names.index("s2") < names.index("c3") < names.index("s4") < names.index("pre_logits")
    # the paper's network (no padding, 32x32): C1 5, S2 6, C3 14, S4 16, C5 32 (one unit, centred)
    rf = zi.receptive_fields(zoo.create("lenet5_classic"))
    assert _sizes(rf, ["C1", "S2", "C3", "S4", "C5"]) == [5, 6, 14, 16, 32]
    assert rf["C5"].spatial and rf["C5"].jump == (4, 4) and rf["C5"].start == (15.5, 15.5)
    assert "S4" in zi.receptive_field_table(rf)


@pytest.mark.parametrize("variables, message", [
    ({"params": {}}, r"^variables: LeNet5 keeps a \(6,\) array at params/conv1/bias; these variables have none there "
                     r"\(another model's variables\?\)$"),
    (lambda: random_variables(zoo.create("lenet5", num_classes=4), (28, 28, 1)),
     r"^variables: LeNet5 keeps a \(10,\) array at params/fc3/bias; these variables have \(4,\) there \(another "
     r"model's variables\?\)$"),
    (lambda: random_variables(zoo.create("resnet18"), (32, 32, 3)),
     r"^variables: LeNet5 keeps a \(6,\) array at params/conv1/bias; these variables have none there"),
])
def test_variables_of_another_model_are_one_line_naming_them(variables, message):
    """They once failed inside the trace (flax's ScopeCollectionNotFound), as first_layer_filters does not."""
    lenet = zoo.create("lenet5")
    with pytest.raises(ValueError, match=message) as e:
        zi.receptive_fields(lenet, variables=variables() if callable(variables) else variables)
    assert "\n" not in str(e.value)
    assert zi.receptive_fields(lenet, variables=random_variables(lenet, (28, 28, 1))) == zi.receptive_fields(lenet)


def test_receptive_fields_of_vgg16_and_alexnet_match_hand_computation():
    rf = zi.receptive_fields(zoo.create("vgg16"))
    convs = [f"features_{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    pools = [f"max_pool{i}" for i in range(1, 6)]
    # conv1_1 3, conv1_2 5, pool1 6, conv2_1 10, conv2_2 14, pool2 16, conv3 24 32 40, pool3 44,
    # conv4 60 76 92, pool4 100, conv5 132 164 196, pool5 212
    assert _sizes(rf, convs) == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]
    assert _sizes(rf, pools) == [6, 16, 44, 100, 212]
    assert [rf[p].jump[0] for p in pools] == [2, 4, 8, 16, 32]
    assert rf["block3_conv1"].size == (24, 24) and rf["block5_conv3"].size == (196, 196)
    assert rf["max_pool5"].start == (15.5, 15.5) and rf["max_pool5"].shape == (1, 7, 7, 512)
    # AlexNet (2012): conv1 11/4 -> 11, pool 3/2 -> 19, conv2 5 -> 51, pool -> 67, conv3-5 -> 99 131 163, pool -> 195
    rf = zi.receptive_fields(zoo.create("alexnet_v1"))
    assert _sizes(rf, ["conv1", "max_pool1", "conv2", "max_pool2", "conv3", "conv4", "conv5", "max_pool3"]) == \
        [11, 19, 51, 67, 99, 131, 163, 195]
    assert rf["relu5"].jump == (16, 16) and rf["max_pool3"].jump == (32, 32)


class _Stack(nn.Module):
    """Three stacked 3x3 convs (the notes' 3 -> 5 -> 7), a stride-2 conv, a dilated conv, a pool."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        ops = Ops(train=train, norm_kind=None)
        for i in range(3):
            x = nn.relu(ops.conv(x, 4, 3, name=f"conv{i + 1}"))
        x = ops.conv(x, 4, 3, strides=2, name="down")
        x = ops.conv(x, 4, 3, dilation=2, name="dilated")
        x = avg_pool(x, 2, 2)
        x = ops.conv(x, 4, (1, 3), padding=(0, 0), name="wide")
        return x.mean(axis=(1, 2))


@pytest.mark.integration
def test_receptive_field_recursion_stacked_strided_dilated_and_residual_models():
    rf = zi.receptive_fields(_Stack(), (32, 32, 1))
    assert _sizes(rf, ["conv1", "conv2", "conv3"]) == [3, 5, 7]
    assert rf["down"].size == (9, 9) and rf["down"].jump == (2, 2) and rf["down"].start == (0, 0)
    assert rf["dilated"].size == (17, 17) and rf["dilated"].jump == (2, 2)        # 9 + (3-1)*2*2
    assert rf["avg_pool1"].size == (19, 19) and rf["avg_pool1"].jump == (4, 4) and rf["avg_pool1"].start == (1, 1)
    assert rf["wide"].size == (19, 27) and rf["wide"].start == (1, 5)            # 1x3, no padding
    # residual networks and squeeze-excitation gates: published theoretical fields
    rf = zi.receptive_fields(zoo.create("resnet18"), modules=False)
    assert rf["layer4"].size == (435, 435) and rf["layer4"].jump == (32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # squeeze-excitation, hard-swish: no primitive left unexplained
        rf = zi.receptive_fields(zoo.create("mobilenet_v3_small"), modules=False)
    assert rf["stem"].size == (3, 3) and rf["last_conv"].jump == (32, 32) and not rf["pre_logits"].spatial


class _Crop(nn.Module):
    """A 3x3 conv, a crop by a primitive that has no rule (lax.dynamic_slice), another 3x3 conv."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        ops = Ops(train=train, norm_kind=None)
        x = ops.conv(x, 4, 3, name="conv1")
        x = jax.lax.dynamic_slice(x, (0, 2, 2, 0), (x.shape[0], 8, 8, 4))
        return ops.conv(x, 4, 3, name="conv2")


def test_a_primitive_without_a_rule_is_named_and_taken_as_global():
    with pytest.warns(UserWarning, match=r"\['dynamic_slice'\] treated as global"):
        rf = zi.receptive_fields(_Crop(), (16, 16, 1))
    assert rf["conv1"].size == (3, 3) and rf["conv1"].spatial
    # every conv1 unit reaches every output: the union of their fields, pixels -1..16 (padding 1)
    assert not rf["conv2"].spatial and rf["conv2"].size == (18, 18) and rf["conv2"].jump == (0, 0)


def test_a_renamed_primitive_is_detected_not_silently_mis_measured(monkeypatch):
    # as if JAX renamed conv_general_dilated: the walk has no rule for it and says so
    monkeypatch.delitem(field_rules.RULES, "conv_general_dilated")
    with pytest.warns(UserWarning, match="conv_general_dilated"):
        rf = zi.receptive_fields(zoo.create("lenet5"), modules=False)
    assert not rf["c1"].spatial
    assert importlib.import_module("zoo.inspect.receptive_fields").RULES is field_rules.RULES

