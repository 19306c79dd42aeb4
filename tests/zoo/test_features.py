"""Named intermediate features (zoo.features): the documented taps with their shapes, in forward
order, and features of a loaded model by tap name and module path, checked against the logits."""
import jax
import numpy as np
import pytest

import zoo
from fixtures.parity.recipe import recipe_state_dict
from helpers import inner_loop_sample
from zoo import convert

# The documented taps (family docstrings) with their shapes for one 224x224 image.
DOCUMENTED = {
    "resnet18": {"stem": (56, 56, 64), "layer1": (56, 56, 64), "layer2": (28, 28, 128), "layer3": (14, 14, 256),
                 "layer4": (7, 7, 512), "pre_logits": (512,)},
    "resnet50": {"layer1": (56, 56, 256), "layer4": (7, 7, 2048), "pre_logits": (2048,)},
    "vgg16": {"block1_conv1": (224, 224, 64), "block3_conv1": (56, 56, 256), "block5_conv3": (14, 14, 512),
              "pre_logits": (4096,)},
    "alexnet": {"relu1": (55, 55, 64), "relu5": (13, 13, 256), "relu6": (4096,), "relu7": (4096,),
                "pre_logits": (4096,)},
    "densenet121": {"stem": (56, 56, 64), "denseblock1": (56, 56, 256), "denseblock2": (28, 28, 512),
                    "denseblock3": (14, 14, 1024), "denseblock4": (7, 7, 1024), "norm5": (7, 7, 1024),
                    "pre_logits": (1024,)},
    "mobilenet_v2": {"stem": (112, 112, 32), "block1": (112, 112, 16), "block3": (56, 56, 24), "block6": (28, 28, 32),
                     "block13": (14, 14, 96), "block17": (7, 7, 320), "last_conv": (7, 7, 1280), "pre_logits": (1280,)},
    "mobilenet_v3_small": {"stem": (112, 112, 16), "block1": (56, 56, 16), "block3": (28, 28, 24),
                           "block8": (14, 14, 48), "block11": (7, 7, 96), "last_conv": (7, 7, 576),
                           "pre_logits": (1024,)},
    "shufflenet_v2_x1_0": {"stem": (56, 56, 24), "stage2": (28, 28, 116), "stage3": (14, 14, 232),
                           "stage4": (7, 7, 464), "conv5": (7, 7, 1024), "pre_logits": (1024,)},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_feature_taps_have_the_documented_shapes(name):
    names = zoo.feature_names(zoo.create(name), (224, 224, 3))
    for tap, shape in DOCUMENTED[name].items():
        assert names.get(tap) == (1, *shape), (tap, names.get(tap))


@pytest.mark.integration
def test_features_of_a_loaded_model_by_tap_and_module_path():
    model = zoo.create("resnet18")
    variables = convert.from_torchvision("resnet18", recipe_state_dict(convert.state_dict_shapes("resnet18")))
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    layers = ["layer1", "layer2", "layer3", "layer4", "pre_logits", "layer1_0/conv1"]

    @jax.jit
    def run(v, x):  # one compiled program: features and logits
        return zoo.features(model, v, x, layers=layers), model.apply(v, x, train=False)

    feats, logits = run(variables, x)
    assert [feats[k].shape for k in layers] == [(2, 16, 16, 64), (2, 8, 8, 128), (2, 4, 4, 256), (2, 2, 2, 512),
                                                (2, 512), (2, 16, 16, 64)]
    np.testing.assert_allclose(feats["pre_logits"], np.asarray(feats["layer4"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    head = variables["params"]["fc"]
    np.testing.assert_allclose(np.asarray(feats["pre_logits"]) @ head["kernel"] + head["bias"], logits,
                               rtol=1e-4, atol=1e-4 * float(np.abs(logits).max()))
    with pytest.raises(ValueError, match="neither a feature tap"):
        zoo.features(model, variables, x[:1, :32, :32], layers=["block3_conv1"])


# Taps in the order the networks compute them (the papers' layer order).
FORWARD = {
    "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4", "pre_logits"],
    "lenet5": ["c1", "s2", "c3", "s4", "c5", "f6", "pre_logits"],
    "densenet121": ["stem", "denseblock1", "denseblock2", "denseblock3", "denseblock4", "norm5", "pre_logits"],
    "mobilenet_v3_small": ["stem", "block1", "block3", "block8", "block11", "last_conv", "pre_logits"],
    "alexnet": ["relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7", "pre_logits"],
}


@pytest.mark.parametrize("name", inner_loop_sample(sorted(FORWARD), {"lenet5", "resnet18"}))
def test_feature_names_come_in_forward_order(name):
    model = zoo.create(name)
    names = list(zoo.feature_names(model, model.example_input_shape()))
    assert [n for n in names if n in FORWARD[name]] == FORWARD[name]



def test_features_in_train_mode_apply_the_dropout_of_the_models_own_training_forward():
    """train=True with rngs={'dropout': key}: the masks of model.apply(train=True) with that key, in the
    taps and in the module paths (captured by a second pass); a missing key is one line naming rngs."""
    from helpers import random_variables

    model = zoo.create("alexnet", num_classes=10)
    variables = random_variables(model, (63, 63, 3))
    x = np.random.default_rng(0).standard_normal((2, 63, 63, 3)).astype(np.float32)
    key = jax.random.key(3)
    layers = ["relu6", "relu7", "pre_logits", "classifier_4"]
    feats = zoo.features(model, variables, x, layers, train=True, rngs={"dropout": key})
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})
    head = variables["params"]["classifier_6"]
    np.testing.assert_allclose(np.asarray(feats["pre_logits"]) @ head["kernel"] + head["bias"], logits,
                               rtol=1e-4, atol=1e-4 * float(np.abs(logits).max()))
    np.testing.assert_allclose(np.maximum(feats["classifier_4"], 0), feats["relu7"], rtol=1e-6, atol=1e-6)
    other = zoo.features(model, variables, x, ["relu7"], train=True, rngs={"dropout": jax.random.key(4)})
    evals = zoo.features(model, variables, x, ["relu7"])
    assert not np.allclose(feats["relu7"], other["relu7"]) and not np.allclose(feats["relu7"], evals["relu7"])
    with pytest.raises(ValueError, match=r"^zoo\.features\(train=True\): AlexNet's .*pass rngs=\{'dropout'") as e:
        zoo.features(model, variables, x, layers, train=True)
    assert "\n" not in str(e.value)
    bare = zoo.features(model, variables, x, ["relu7"], train=True, rngs=key)   # a bare key, as model.apply takes
    np.testing.assert_array_equal(bare["relu7"], zoo.features(model, variables, x, ["relu7"], train=True,
                                                              rngs={"params": key})["relu7"])


def test_features_in_train_mode_of_a_model_without_dropout_need_no_key():
    """As model.apply: a network without dropout runs its training-mode forward pass (batch statistics)
    without rngs; the taps are that pass's (its logits through the head) and differ from eval mode's."""
    from helpers import random_variables

    model = zoo.create("resnet18", num_classes=10)
    variables = random_variables(model, (32, 32, 3))
    x = np.random.default_rng(1).standard_normal((4, 32, 32, 3)).astype(np.float32)
    feats = zoo.features(model, variables, x, ["pre_logits", "layer1_0/conv1"], train=True)
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    head = variables["params"]["fc"]
    np.testing.assert_allclose(np.asarray(feats["pre_logits"]) @ head["kernel"] + head["bias"], logits,
                               rtol=1e-4, atol=1e-4 * float(np.abs(logits).max()))
    assert not np.allclose(feats["pre_logits"], zoo.features(model, variables, x, ["pre_logits"])["pre_logits"])
