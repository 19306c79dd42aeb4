"""Attribution (zoo.inspect.attribution) on a LeNet-5 trained briefly on mnist5k (the shared
``trained_lenet5`` fixture): saliency and Grad-CAM fall on the digit, occluding the blank border
matters less than occluding the digit, class models raise their class score; Grad-CAM's default layer
comes from the taps' shapes."""
import importlib

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import random_variables
from zoo import inspect as zi
from zoo.layers import tap

def _digit_and_border(raw):
    digit = raw[..., 0] > 128
    border = np.zeros(raw.shape[1:3], bool)
    border[:4], border[-4:], border[:, :4], border[:, -4:] = True, True, True, True
    return digit, border


def _concentration(maps, raw):
    """(mean over images of the map's mean on digit pixels, ... on the 4-pixel border, fraction of
    images whose digit mean beats their border mean)."""
    digit, border = _digit_and_border(raw)
    d = np.array([m[k].mean() for m, k in zip(maps, digit)])
    b = np.array([m[border].mean() for m in maps])
    return d.mean(), b.mean(), (d > b).mean()


@pytest.mark.integration
def test_saliency_and_grad_cam_are_input_sized_finite_non_negative_and_on_the_digit(trained_lenet5):
    model, variables, x, raw = (trained_lenet5[k] for k in ("model", "variables", "x", "raw"))
    assert zi.default_cam_layer(model) == "s4"  # LeNet's last spatial tap (last pool output, 5x5)
    sal = zi.saliency(model, variables, x)
    cam = zi.grad_cam(model, variables, x)
    cam_c3 = zi.grad_cam(model, variables, x, layer="c3")
    for maps in (sal, cam, cam_c3):
        assert maps.shape == x.shape[:3] and np.isfinite(maps).all() and (maps >= 0).all()
        assert (maps.reshape(len(maps), -1).max(axis=1) > 0).mean() > 0.9  # defined (non-zero) on most images
    d, b, frac = _concentration(sal, raw)
    assert d > 2 * b and frac > 0.9, (d, b, frac)
    for maps in (cam, cam_c3):
        d, b, frac = _concentration(maps, raw)
        assert d > 1.1 * b and frac > 0.5, (d, b, frac)
    # explicit classes; the layer's own resolution; a single image; Grad-CAM needs a spatial tap
    assert zi.grad_cam(model, variables, x[:2], class_index=[3, 4], upsample=False).shape == (2, 5, 5)
    assert zi.saliency(model, variables, x[0], class_index=trained_lenet5["labels"][0]).shape == (1, 28, 28)
    with pytest.raises(ValueError, match=r"^layer=.conv2.: Grad-CAM needs a spatial feature tap of LeNet5"):
        zi.grad_cam(model, variables, x[:1], layer="conv2")


def test_occlusion_of_a_blank_border_changes_the_probability_less_than_of_the_digit(trained_lenet5):
    model, variables, x, raw = (trained_lenet5[k] for k in ("model", "variables", "x", "raw"))
    patch, checked = 6, 0
    for i in range(8):
        o = zi.occlusion(model, variables, x[i], patch=patch, stride=2)
        assert o.drops.shape == (len(o.rows), len(o.cols)) == (12, 12) and o.map.shape == (28, 28)
        assert np.isfinite(o.map).all() and o.class_index == zi.predict(model, variables, x[i])[0][0]
        ink = np.array([[raw[i, r:r + patch, c:c + patch].sum() for c in o.cols] for r in o.rows])
        blank = ink == 0  # patch positions over the blank border only
        if not blank.any():
            continue
        checked += 1
        assert np.abs(o.drops[blank]).max() < o.drops[ink > 0].max()
        assert np.abs(o.drops[blank]).max() < 0.05
    assert checked >= 4
    # the batched forward passes agree with occluding by hand
    o = zi.occlusion(model, variables, x[0], class_index=2, patch=10, stride=9)
    y0, x0 = int(o.rows[1]), int(o.cols[2])
    by_hand = np.array(x[0])
    by_hand[y0:y0 + 10, x0:x0 + 10] = 0.0
    p = zi.predict(model, variables, by_hand)[1][0, 2]
    assert o.drops[1, 2] == pytest.approx(o.probability - p, abs=1e-5)
    assert list(o.rows) == [0, 9, 18] and o.class_index == 2


@pytest.mark.integration
def test_class_model_raises_the_class_score(trained_lenet5):
    model, variables = trained_lenet5["model"], trained_lenet5["variables"]
    for c in (0, 7):
        img, scores = zi.class_model(model, variables, c, steps=20)  # as the command below
        assert img.shape == (28, 28, 1) and scores.shape == (21,) and np.isfinite(img).all()
        zero_logits = np.asarray(model.apply(variables, jnp.zeros((1, 28, 28, 1)), train=False))[0]
        assert scores[0] == pytest.approx(zero_logits[c], abs=1e-4)  # the ascent starts from the zero image
        assert scores[-1] > scores[0] + 1.0
        logits = np.asarray(model.apply(variables, jnp.asarray(img)[None], train=False))[0]
        assert logits[c] == pytest.approx(scores[-1], rel=1e-4) and logits.argmax() == c


class _VectorTapOnly(nn.Module):
    """A classifier whose only tap is a vector."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(tap(self, "pre_logits", x.mean(axis=(1, 2))))


@pytest.mark.integration
def test_grad_cam_default_layer_comes_from_the_tap_shapes_not_the_jaxpr_walk(monkeypatch):
    """With the receptive-field interpreter broken (as by a renamed JAX primitive), Grad-CAM still picks
    the documented default: the last tap that is a spatial map of at least 2x2."""
    walk = importlib.import_module("zoo.inspect.receptive_fields")

    def broken(*args, **kwargs):
        raise AssertionError("Grad-CAM must not go through the receptive-field interpreter")

    monkeypatch.setattr(walk._Walker, "run", broken)
    monkeypatch.setattr(walk, "receptive_fields", broken)
    resnet18, lenet5 = zoo.create("resnet18", num_classes=4), zoo.create("lenet5", num_classes=10)
    assert zi.default_cam_layer(resnet18) == "layer4" and zi.default_cam_layer(lenet5) == "s4"
    assert zi.default_cam_layer(zoo.create("resnet18")) == "layer4"
    assert zi.default_cam_layer(resnet18, (64, 64, 3)) == "layer4"          # 2x2 at 64: still a map
    assert zi.default_cam_layer(resnet18, (32, 32, 3)) == "layer3"          # layer4 is 1x1 at 32
    for model, shape, layer in ((resnet18, (64, 64, 3), "layer4"), (lenet5, (28, 28, 1), "s4")):
        variables = random_variables(model, shape)
        x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        default = zi.grad_cam(model, variables, x, class_index=[1, 2], upsample=False)
        explicit = zi.grad_cam(model, variables, x, class_index=[1, 2], layer=layer, upsample=False)
        np.testing.assert_array_equal(default, explicit)
        assert default.shape == (2, *zoo.feature_names(model, shape)[layer][1:3])
    with pytest.raises(ValueError, match="no spatial feature tap"):
        zi.default_cam_layer(_VectorTapOnly(), (8, 8, 3))

