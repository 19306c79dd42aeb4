"""train.data.decode: folder images to pixels. JPEGs through simplejpeg give PIL's pixels at full size;
decoded at a reduced size for a crop, the resized crop stays within a JPEG decoder's tolerance of the
full-size path, and the crop itself is the one the full-size path draws for the same seed."""
import numpy as np
import pytest
from PIL import Image

from train import data
from train.data import decode, transforms

pytest.importorskip("simplejpeg")


def photo(h, w, seed=0):
    """A smooth, photo-like RGB image (JPEG-friendly: low frequencies plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [np.sin(x / rng.uniform(15, 40) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(15, 40)) for _ in range(3)]
    img = 128 + 100 * np.stack(chans, -1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_file(path, img, quality=90, mode="RGB"):
    Image.fromarray(img).convert(mode).save(path, "JPEG", quality=quality)
    return path


def pil_pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_full_size_jpeg_is_pils_decode(tmp_path):
    for i, (h, w) in enumerate([(375, 500), (333, 251), (64, 64)]):
        path = jpeg_file(tmp_path / f"{i}.jpg", photo(h, w, i))
        img, box = decode.read_rgb(path)
        assert box is None and img.dtype == np.uint8 and img.shape == (h, w, 3)
        np.testing.assert_array_equal(img, pil_pixels(path))


def test_other_files_go_through_pil(tmp_path):
    src = photo(40, 50)
    Image.fromarray(src).save(tmp_path / "a.png")
    gray = jpeg_file(tmp_path / "g.jpg", src, mode="L")
    cmyk = jpeg_file(tmp_path / "c.jpg", src, mode="CMYK")
    for path in (tmp_path / "a.png", cmyk):   # full size, whatever the crop
        img, _ = decode.read_rgb(path, lambda h, w: (0, 0, w, h), (8, 8))
        np.testing.assert_array_equal(img, pil_pixels(path))
    np.testing.assert_array_equal(decode.read_rgb(gray)[0], pil_pixels(gray))   # grayscale JPEG: RGB too
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(Exception):
        decode.read_rgb(tmp_path / "bad.jpg")


def test_min_decoded_size_keeps_the_crop_at_least_the_output_size():
    assert decode.min_decoded_size(400, 600, (100, 50, 400, 250), (100, 150)) == (200, 300)   # 1/2
    assert decode.min_decoded_size(400, 600, (0, 0, 600, 400), (50, 75)) == (50, 75)            # 1/8
    assert decode.min_decoded_size(400, 600, (0, 0, 600, 400), (51, 75)) == (100, 150)          # 1/4
    assert decode.min_decoded_size(400, 600, (100, 50, 400, 250), (101, 150)) == (0, 0)         # full size
    assert decode.min_decoded_size(400, 600, None, (100, 150)) == (0, 0)


def test_reduced_decode_of_a_crop_is_within_decoder_tolerance(tmp_path):
    path = jpeg_file(tmp_path / "big.jpg", photo(480, 640, 3))
    box = (40, 30, 600, 450)   # 560 x 420 of 640 x 480, resized to 112 x 112: decodable at a quarter of the size
    img, scaled = decode.read_rgb(path, lambda h, w: box, (112, 112))
    assert img.shape[0] < 480 and img.shape[1] < 640
    assert scaled[2] - scaled[0] >= 112 and scaled[3] - scaled[1] >= 112
    ours = transforms._pil_resize(img, (112, 112), scaled).astype(np.float32)
    ref = transforms._pil_resize(pil_pixels(path), (112, 112), box).astype(np.float32)
    diff = np.abs(ours - ref)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 8


def _folder(root, n=12):
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = int(rng.integers(200, 500)), int(rng.integers(200, 500))
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        jpeg_file(root / f"c{i % 2}" / f"{i}.jpg", photo(h, w, i))
    return root


def _batches(root, seed, n=2):
    cfg = {"name": f"folder:{root}", "augment": "imagenet", "holdout_fraction": 0.0}
    pipe = data.load(cfg, split="train", train=True, batch_size=4, image_shape=(64, 64, 3), seed=seed)
    it = iter(pipe)
    return [next(it) for _ in range(n)], pipe.preprocessing


def test_training_crops_are_deterministic_and_match_the_full_size_path(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    first, pp = _batches(root, seed=5)
    again, _ = _batches(root, seed=5)
    other, _ = _batches(root, seed=6)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])
    monkeypatch.setattr(decode, "simplejpeg", None)   # the reference: PIL, full size, the same crop boxes
    ref, _ = _batches(root, seed=5)
    pixel = np.asarray(pp["std"], np.float32) * 255   # normalised units -> pixel levels
    for a, r in zip(first, ref):
        np.testing.assert_array_equal(a["label"], r["label"])
        diff = np.abs(a["image"] - r["image"]) * pixel
        # levels of 255: DCT-domain scaling filters otherwise than PIL's antialiased bilinear (noise aliases differently)
        assert diff.mean() < 3.5 and np.percentile(diff, 99) < 20
