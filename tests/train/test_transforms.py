"""train.data.transforms, data.train_resize='fast': training crops sampled bilinearly without
antialiasing (OpenCV), checked against jax.image.scale_and_translate(antialias=False) and, where a
crop is enlarged (no antialiasing either way), against PIL's bilinear resize. Training crops are cut
out, then resized (torchvision's resized_crop; tests/fixtures/transforms/resized_crop.npz), the
evaluation centre crop is one resize of the whole image (torchvision's Resize + CenterCrop)."""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import default
from helpers import FIXTURES
from train import data
from train.data import transforms

pytest.importorskip("cv2")

BOXES = [(0, 0, 120, 90),               # the whole image, shrunk 2.5 x 2.25
         (10.3, 5.7, 60.2, 50.1),       # fractional box (as after reduced-size decoding), shrunk ~1.1x
         (0, 0, 30, 20),                # a corner, enlarged
         (90.5, 60.25, 120, 90),        # the opposite corner, enlarged, fractional
         (3, 4, 100, 85)]


def smooth_image(h=90, w=120):
    """(h, w, 3) uint8 without sharp edges: where sampling positions differ by OpenCV's 1/32 pixel,
    values differ by well under one level."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = (127 + 60 * np.sin(xx / 7.0) + 50 * np.cos(yy / 9.0 + xx / 13.0)).clip(0, 255)
    return np.stack([g, g[::-1], 255 - g], -1).astype(np.uint8)


def scale_and_translate(img, size, box):
    """The box of img resized to size by JAX's bilinear sampling without antialiasing, float."""
    left, top, right, bottom = box
    scale = jnp.array([size[0] / (bottom - top), size[1] / (right - left)])
    out = jax.image.scale_and_translate(jnp.asarray(img, jnp.float32), (*size, img.shape[-1]), (0, 1), scale,
                                        -jnp.array([top, left]) * scale, "linear", antialias=False)
    return np.asarray(out)


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("flip", [False, True])
def test_fast_resize_is_bilinear_sampling_of_the_box(box, flip):
    img = smooth_image()
    out = transforms._fast_resize(img, (48, 40), box, flip=flip)
    ref = scale_and_translate(img, (48, 40), box)
    assert out.shape == (48, 40, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out, ref[:, ::-1] if flip else ref, atol=1.0)


@pytest.mark.parametrize("box", [(0, 0, 30, 20), (90.5, 60.25, 120, 90), (20, 10, 60, 40)])
def test_fast_resize_of_enlarged_crops_is_pils_bilinear(box):
    """Antialiasing only widens the filter when shrinking: enlarged crops match torchvision's PIL path."""
    img = smooth_image()
    ref = np.asarray(Image.fromarray(img).resize((64, 56), Image.Resampling.BILINEAR, box=box))
    np.testing.assert_allclose(transforms._fast_resize(img, (56, 64), box), ref, atol=1.0)


def test_fast_resize_on_gray_images():
    img = smooth_image()[..., :1]
    out = transforms._fast_resize(img, (48, 40), BOXES[1])
    assert out.shape == (48, 40, 1)
    np.testing.assert_allclose(out, scale_and_translate(img, (48, 40), BOXES[1]), atol=1.0)


def _pipe(train_resize, *, train=True, interpolation="bilinear"):
    c = default.get_config().data
    c.name, c.augment, c.synthetic_num_examples, c.prefetch = "synthetic", "imagenet", 64, 0
    c.train_resize, c.interpolation = train_resize, interpolation
    return data.load(c, split="train", train=train, batch_size=16, image_shape=(40, 40, 3), seed=3,
                     process_index=0, process_count=1)


def test_the_pipeline_resizes_training_crops_with_the_chosen_filter_and_evaluates_with_pil():
    fast, pil = _pipe("fast"), _pipe("antialiased")
    assert fast.preprocessing["train_resize"] == "fast" and pil.preprocessing["train_resize"] == "antialiased"
    bf, bp = next(iter(fast)), next(iter(pil))
    assert bf["image"].shape == (16, 40, 40, 3)
    np.testing.assert_array_equal(bf["label"], bp["label"])         # same seed: same examples, crops and flips
    assert not np.array_equal(bf["image"], bp["image"])             # the synthetic images are shrunk: filters differ
    ev_fast, ev_pil = next(iter(_pipe("fast", train=False))), next(iter(_pipe("antialiased", train=False)))
    np.testing.assert_array_equal(ev_fast["image"], ev_pil["image"])   # evaluation: always PIL


def test_geometric_under_fast_is_each_crop_box_resized_and_flipped():
    pp = transforms.make_preprocessing(dataset="x", image_shape=(32, 24, 3), source_channels=3, mean=[0] * 3,
                                       std=[1] * 3, eval_resize="center_crop", augment="imagenet", train_resize="fast")
    images = [smooth_image(90, 120), smooth_image(70, 50), smooth_image(40, 60)]
    rand = transforms.draw_random(np.random.default_rng(0), 3, "imagenet")
    rand["flip"] = np.array([True, False, True])
    out = transforms.geometric(images, pp, train=True, rand=rand)
    for k, img in enumerate(images):
        box = transforms.crop_box(k, img.shape[0], img.shape[1], pp, train=True, rand=rand)
        region, sub = transforms._crop_region(img, box)   # cut out first: edges clamp at the crop
        np.testing.assert_array_equal(out[k], transforms._fast_resize(region, (32, 24), sub, flip=bool(rand["flip"][k])))
    assert not np.array_equal(out, transforms.geometric(images, {**pp, "train_resize": "antialiased"},
                                                        train=True, rand=rand))


def test_train_resize_errors_name_the_field_and_the_allowed_values(monkeypatch):
    kw = dict(dataset="x", image_shape=(8, 8, 3), source_channels=3, mean=[0] * 3, std=[1] * 3,
              eval_resize="center_crop", augment="imagenet")
    with pytest.raises(ValueError, match=r"^data\.train_resize='sharp': allowed values are 'antialiased', 'fast'$"):
        transforms.make_preprocessing(**kw, train_resize="sharp")
    with pytest.raises(ValueError, match=r"^data\.train_resize='fast' resizes bilinearly; data\.interpolation='bicubic' "
                                         r"needs data\.train_resize='antialiased'$"):
        transforms.make_preprocessing(**kw, train_resize="fast", interpolation="bicubic")
    with pytest.raises(ValueError, match=r"^data\.augment='Imagenet': allowed values are 'auto', 'none', 'mnist', "
                                         r"'cifar', 'imagenet'$"):
        transforms.make_preprocessing(**{**kw, "augment": "Imagenet"})
    monkeypatch.setitem(sys.modules, "cv2", None)   # OpenCV not installed
    with pytest.raises(ImportError, match="data.train_resize='fast' needs OpenCV: pip install"):
        _pipe("fast")
    _pipe("fast", train=False)     # an eval pipeline never resizes with it


def test_preprocessing_stored_before_train_resize_existed_reads_as_antialiased():
    pp = transforms.make_preprocessing(dataset="x", image_shape=(16, 16, 3), source_channels=3, mean=[0.5] * 3,
                                       std=[0.25] * 3, eval_resize="center_crop", augment="imagenet")
    old = {k: v for k, v in pp.items() if k != "train_resize"}
    assert pp["train_resize"] == "antialiased" and transforms.complete(old) == pp


def test_data_interpolation_is_the_filter_of_training_crops_and_evaluation(tmp_path):
    """torchvision's reference scripts' --interpolation: one filter for RandomResizedCrop and Resize."""
    bilinear, bicubic = _pipe("antialiased"), _pipe("antialiased", interpolation="bicubic")
    assert bicubic.preprocessing["interpolation"] == "bicubic" and bilinear.preprocessing["interpolation"] == "bilinear"
    a, b = next(iter(bilinear)), next(iter(bicubic))
    np.testing.assert_array_equal(a["label"], b["label"])             # same examples, crops and flips
    assert not np.array_equal(a["image"], b["image"])
    for k, cls in enumerate(("a", "b")):                               # evaluation: centre crops of a folder
        (tmp_path / "test" / cls).mkdir(parents=True)
        Image.fromarray(smooth_image(90 + 10 * k, 120)).save(tmp_path / "test" / cls / "0.png")

    def centre_crops(interpolation):
        c = default.get_config().data
        c.name, c.prefetch, c.interpolation = f"folder:{tmp_path}", 0, interpolation
        return next(iter(data.load(c, split="test", train=False, batch_size=2, image_shape=(40, 40, 3),
                                   process_index=0, process_count=1)))["image"]
    assert not np.array_equal(centre_crops("bilinear"), centre_crops("bicubic"))


@pytest.mark.parametrize("field, value, allowed", [("interpolation", "nearest", "'bilinear', 'bicubic'"),
                                                    ("train_resize", "sharp", "'antialiased', 'fast'")])
def test_a_bad_data_field_is_one_error_naming_it(field, value, allowed):
    c = default.get_config().data
    c.name = "synthetic"
    setattr(c, field, value)
    with pytest.raises(ValueError, match=f"^data.{field}='{value}': allowed values are {allowed}$"):
        data.load(c, split="train", train=True, batch_size=8, image_shape=(40, 40, 3), process_index=0, process_count=1)


def _train_pp(size, train_resize="antialiased", interpolation="bilinear"):
    return transforms.make_preprocessing(dataset="x", image_shape=(*size, 3), source_channels=3, mean=[0] * 3,
                                         std=[1] * 3, eval_resize="center_crop", augment="imagenet",
                                         interpolation=interpolation, train_resize=train_resize)


@pytest.mark.parametrize("train_resize, interpolation", [("antialiased", "bilinear"), ("antialiased", "bicubic"),
                                                         ("fast", "bilinear")])
@pytest.mark.parametrize("box", [(40, 30, 120, 90),                   # the white region exactly
                                 (40.5, 30.25, 119.5, 89.75),         # fractional (reduced-size decoding)
                                 (40 + 1e-9, 30 - 1e-9, 120 - 1e-9, 90 + 1e-9)])   # scaled, off by rounding
@pytest.mark.parametrize("size", [(56, 48), (72, 96)])               # shrunk, enlarged (where 'fast' reached out)
def test_training_crops_never_read_pixels_outside_the_crop(train_resize, interpolation, box, size):
    """White crop region, black outside: torchvision's RandomResizedCrop (crop, then resize) and big_vision's
    inception_crop (slice, then tf.image.resize) give white everywhere, the border too (a resize of the
    whole image with box=... blended the black in: 220 / 238 / 241 at 224 px)."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[30:90, 40:120] = 255
    rand = {"flip": np.array([False, True])}
    out = transforms.geometric([img, img], _train_pp(size, train_resize, interpolation), train=True, rand=rand,
                               boxes=[box, box])
    assert out.shape == (2, *size, 3) and (out == 255).all()


@pytest.mark.parametrize("train_resize, interpolation, key", [("antialiased", "bilinear", "bilinear"),
                                                              ("antialiased", "bicubic", "bicubic"),
                                                              ("fast", "bilinear", "fast")])
def test_training_crops_are_torchvisions_resized_crop(train_resize, interpolation, key):
    """tests/fixtures/transforms/resized_crop.npz: torchvision's F.resized_crop on the PIL image (antialiased),
    torch's unantialiased bilinear interpolate of the crop ('fast'); within 1 level everywhere, the border too
    (resizing the whole image with box=... was 6-10 levels off there)."""
    ref = np.load(FIXTURES / "transforms" / "resized_crop.npz")
    boxes = [tuple(int(v) for v in b) for b in ref["boxes"]]
    n = len(boxes)
    out = transforms.geometric([ref["image"]] * n, _train_pp((32, 32), train_resize, interpolation), train=True,
                               rand={"flip": np.zeros(n, bool)}, boxes=boxes)
    assert np.abs(out.astype(np.int16) - ref[key]).max() <= 1


@pytest.mark.parametrize("interpolation, resample", [("bilinear", Image.Resampling.BILINEAR),
                                                     ("bicubic", Image.Resampling.BICUBIC)])
def test_the_eval_centre_crop_is_one_resize_of_the_whole_image(interpolation, resample):
    """Evaluation keeps resizing the whole image with box=...: the region torchvision's Resize(37) +
    CenterCrop(32) takes of 60 x 80 (resized 37 x 49, crop at (2, 8), mapped back by 60 / 37 and 80 / 49),
    bit for bit, and within 1 level of torchvision itself (resized_crop.npz), the border included."""
    ref = np.load(FIXTURES / "transforms" / "resized_crop.npz")
    out = transforms.preprocess_eval(ref["image"], _train_pp((32, 32), interpolation=interpolation))
    box = (8 * (80 / 49), 2 * (60 / 37), 40 * (80 / 49), 34 * (60 / 37))
    expect = np.asarray(Image.fromarray(ref["image"]).resize((32, 32), resample, box=box))
    np.testing.assert_array_equal(np.round(out[0] * 255.0), expect)
    assert np.abs(expect.astype(np.int16) - ref[f"eval_{interpolation}"]).max() <= 1
