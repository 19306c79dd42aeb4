"""VGG against Simonyan & Zisserman 2015 (Table 1 configurations) and torchvision (module names of its
``features`` Sequential, with and without batch norm; init). Shapes and counts use jax.eval_shape."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, count, draw, forward_shapes, images, key, layer_modules
from zoo import vgg


def _torchvision_features(cfg, batch_norm):
    """torchvision's make_layers, as names: {index: kind} of its features nn.Sequential."""
    layers = []
    for v in cfg:
        layers += ["pool"] if v == "M" else (["conv", "bn", "relu"] if batch_norm else ["conv", "relu"])
    return {i: kind for i, kind in enumerate(layers) if kind in ("conv", "bn")}


@pytest.mark.parametrize("name", [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")])
def test_vgg_names_and_shapes_follow_torchvision(name):
    v = abstract_variables(name, num_classes=10)
    cfg = vgg.CFGS[zoo.create(name).cfg]
    layers = _torchvision_features(cfg, name.endswith("_bn"))
    expected = {f"features_{i}": ({"kernel", "bias"} if kind == "conv" else {"scale", "bias"})
                for i, kind in layers.items()}
    expected.update({f"classifier_{i}": {"kernel", "bias"} for i in (0, 3, 6)})
    assert {k: set(p) for k, p in v["params"].items()} == expected
    convs = [v["params"][f"features_{i}"]["kernel"].shape for i, kind in layers.items() if kind == "conv"]
    channels = [c for c in cfg if c != "M"]
    assert convs == [(3, 3, cin, cout) for cin, cout in zip([3] + channels[:-1], channels)]
    assert v["params"]["classifier_0"]["kernel"].shape == (512 * 7 * 7, 4096)
    assert v["params"]["classifier_6"]["kernel"].shape == (4096, 10)
    if name.endswith("_bn"):
        assert set(v["batch_stats"]) == {f"features_{i}" for i, kind in layers.items() if kind == "bn"}


def test_vgg16_taps_keras_names():
    feats, logits = forward_shapes("vgg16")
    blocks = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
    assert set(feats) == {f"block{b}_conv{c}" for b, n in blocks.items() for c in range(1, n + 1)} | {"pre_logits"}
    assert feats["block1_conv2"] == (1, 224, 224, 64)
    assert feats["block3_conv1"] == (1, 56, 56, 256)
    assert feats["block5_conv3"] == (1, 14, 14, 512)
    assert feats["pre_logits"] == (1, 4096) and logits == (1, 1000)


@pytest.mark.parametrize("norm", ["group", "layer", "instance"])
def test_vgg_other_norms_build(norm):
    v = abstract_variables("vgg11", norm=norm)
    assert "batch_stats" not in v
    assert set(v["params"]["features_1"]) == {"scale", "bias"}
    assert count(v["params"]) == zoo.model_info("vgg11_bn").params


def test_vgg_min_input_32():
    feats, logits = forward_shapes("vgg11", (32, 32, 3))
    assert feats["block5_conv2"] == (1, 2, 2, 512) and logits == (1, 1000)
    with pytest.raises(ValueError, match="too small"):
        forward_shapes("vgg11", (31, 31, 3))


@pytest.mark.parametrize("override, pattern", [
    (dict(cfg="C"), "cfg.*allowed"),
    (dict(dropout=1.0), "dropout"),
    (dict(norm="bn"), "norm.*allowed"),
])
def test_vgg_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        vgg.VGG(**override)


def test_vgg_init_is_torchvisions():
    """Convs kaiming_normal_(mode='fan_out', nonlinearity='relu') with zero bias, Linear N(0, 0.01)
    with zero bias, BatchNorm 1 / 0 (each layer's initialisers, drawn at a small shape)."""
    layers = layer_modules("vgg11_bn")
    assert [k for k, m in layers.items() if isinstance(m, nn.Dense)] == ["classifier_0", "classifier_3", "classifier_6"]
    for path, mod in layers.items():
        if isinstance(mod, nn.Conv):  # std sqrt(2 / fan_out), fan_out = 3 * 3 * C_out
            assert abs(draw(mod.kernel_init, (3, 3, 16, 64)).std() / math.sqrt(2 / (9 * 64)) - 1) < 0.05, path
        elif isinstance(mod, nn.Dense):
            assert abs(draw(mod.kernel_init, (64, 512)).std() - 0.01) < 0.0005, path
        else:
            np.testing.assert_array_equal(draw(mod.scale_init, (16,)), np.ones(16))
        np.testing.assert_array_equal(draw(mod.bias_init, (16,)), np.zeros(16))


@pytest.mark.slow
def test_vgg_init_end_to_end_and_train_step():
    model = zoo.create("vgg11_bn", num_classes=10)
    x = images((2, 32, 32, 3))
    v = jax.jit(model.init)(key(0), x)
    for name, layer in v["params"].items():
        assert float(jnp.abs(layer["bias"]).max()) == 0.0, name
        if "scale" in layer:
            assert float(jnp.abs(layer["scale"] - 1).max()) == 0.0, name
        elif name.startswith("classifier"):
            assert abs(float(layer["kernel"].std()) - 0.01) < 0.0005, name
        else:
            std = math.sqrt(2.0 / (9 * layer["kernel"].shape[-1]))
            assert abs(float(layer["kernel"].std()) / std - 1) < 0.1, name
    apply = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]))
    y1, upd = apply(v, x, key(1))
    y2, _ = apply(v, x, key(2))
    assert y1.shape == (2, 10) and np.isfinite(np.asarray(y1)).all()
    assert not np.allclose(y1, y2)  # dropout 0.5 in the classifier
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), v["batch_stats"], upd["batch_stats"])
    assert all(jax.tree.leaves(changed))
