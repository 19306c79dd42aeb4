"""train.data.folders: a class-folder dataset is refused, with one line naming what to change, where a
run would otherwise learn the wrong thing without a word: split folders taken for classes
(``Train/ Test/``), one class (``folder:`` one level too high), only a test split; a symlink loop
inside a class no longer pulls the other classes' images into it (each link reported once); an empty
``folder:`` / ``idx:`` path is refused, and a class without one readable image is named. 16-bit grey PNGs are scaled to 8 bits
instead of read all white (train.data.decode)."""
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from train import data
from train.data import decode


def _classes(root, names, per_class=3, size=16):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _load(root, split="train", **fields):
    return data.load({"name": f"folder:{root}", "holdout_fraction": 0.25, **fields}, split=split,
                     train=False, batch_size=2, image_shape=(16, 16, 3))


@pytest.mark.parametrize("layout, message", [
    (["Train", "Test"], r"class folders \['Test', 'Train'\] in .* look like splits, not classes; set "
                        r"data\.train_split and data\.eval_split to the split folders' names \(train_split is now "
                        r"'train'\), or point folder: at one split's class folders$"),
    (["training", "validation"], r"class folders \['training', 'validation'\] in .* look like splits"),
    (["test"], r"class folders \['test'\] in .* look like splits"),   # only a test split: once one class 'test'
    (["flowers"], r"one class folder \(flowers\) in .*; a classifier needs two or more \(is .*flowers the "
                  r"dataset's folder\?\)$"),
])
def test_folders_a_run_would_learn_the_wrong_thing_from_are_refused(tmp_path, layout, message):
    """Each once trained without a word: on which split an image came from, or on one class (loss 0)."""
    root = _classes(tmp_path / "d", layout)
    with pytest.raises(ValueError, match=r"^folder:.*: " + message):
        _load(root)


def test_a_symlink_loop_in_a_class_does_not_pull_in_the_other_classes(tmp_path, caplog):
    root = _classes(tmp_path / "d", ["a", "b"])
    os.symlink("..", root / "a" / "loop")              # a/loop -> the dataset's root
    os.symlink(root / "a", root / "a" / "self")        # a/self -> a
    (root / "shared").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "shared" / "x.png")
    os.symlink(root / "shared", root / "b" / "more")   # a symlinked folder elsewhere is followed
    with caplog.at_level(logging.WARNING, logger="train.data"):
        pipe = _load(root, holdout_fraction=0.0)
    counts = np.bincount(pipe.source.labels, minlength=3)
    assert pipe.class_names == ("a", "b", "shared") and list(counts) == [3, 4, 1]
    reported = sorted(r.getMessage().split(" not following ")[1].split(" ")[0] for r in caplog.records
                      if "not following" in r.getMessage())
    assert reported == [str(root / "a" / "loop"), str(root / "a" / "self")]   # once each, not per listing


@pytest.mark.parametrize("name", ["folder:", "idx:", "folder:  "])
def test_an_empty_path_is_refused_not_the_current_folder(name):
    with pytest.raises(ValueError, match=rf"^data\.dataset='{name}': give the path after '{name.strip()}', e\.g\. "):
        data.load({"name": name}, split="train", train=False, batch_size=2, image_shape=(16, 16, 3))


@pytest.mark.parametrize("empty_classes", ["skip", "error"])
def test_a_class_without_one_readable_image_is_named(tmp_path, caplog, empty_classes):
    """It used to stay a class without examples, without a word (the empty-class check lists files only)."""
    root = _classes(tmp_path / "d", ["a", "b", "c"], per_class=2)
    for f in (root / "b").iterdir():
        f.write_bytes(b"not an image")
    message = r"class\(es\) with no readable image in split 'train': b"
    if empty_classes == "error":
        with pytest.raises(ValueError, match=r"^folder:.*: " + message + r" \(data\.empty_classes='error'\)$"):
            _load(root, holdout_fraction=0.0, empty_classes="error")
        return
    with caplog.at_level(logging.WARNING, logger="train.data"):
        pipe = _load(root, holdout_fraction=0.0)
    assert pipe.class_names == ("a", "b", "c") and list(np.bincount(pipe.source.labels, minlength=3)) == [2, 0, 2]
    assert any(re.search(message, r.getMessage()) for r in caplog.records)


def test_16_bit_grey_pngs_are_scaled_to_8_bits_and_float_pixels_refused(tmp_path):
    levels = np.arange(0, 65536, 257, dtype=np.uint16)[:256].reshape(16, 16)  # 0, 257, ... 65535
    Image.fromarray(levels).save(tmp_path / "g16.png")
    img, _ = decode.read_rgb(tmp_path / "g16.png")
    assert img.dtype == np.uint8 and img.shape == (16, 16, 3)
    np.testing.assert_array_equal(img[..., 0], np.arange(256).reshape(16, 16))  # PIL's convert: 0, then 255s
    Image.fromarray(levels.astype(np.float32) / 65535).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"^float pixels \(PIL mode F\) state no 8-bit scale"):
        decode.read_rgb(tmp_path / "f.tif")


@pytest.mark.parametrize("size, eval_resize, augment", [(28, "resize", "cifar"), (64, "resize", "cifar"),
                                                        (65, "center_crop", "imagenet")])
def test_a_folder_of_small_images_is_not_treated_as_imagenet(tmp_path, size, eval_resize, augment):
    """Every folder once got ImageNet's evaluation centre crop (87.5% of a 28 px digit, whose ink reaches
    the border) and, with augment 'auto', the Inception crop down to 8% of its area; small images (both
    sides <= 64 px, the rule TFDS datasets follow) now get the CIFAR family's: resize, pad-and-crop."""
    _classes(tmp_path, ["a", "b"], per_class=4, size=size)
    pipe = data.load({"name": f"folder:{tmp_path}", "holdout_fraction": 0.25, "augment": "auto"}, split="train",
                     train=True, batch_size=2, image_shape=(32, 32, 3))
    assert (pipe.preprocessing["eval_resize"], pipe.preprocessing["augment"]) == (eval_resize, augment)
    from train.data import sources

    assert tuple(pipe.preprocessing["mean"]) == tuple(sources.IMAGENET_MEAN)   # the weights' statistics either way


def test_a_run_on_a_small_image_folder_from_before_keeps_its_stored_evaluation(tmp_path):
    """Runs trained when every folder was ImageNet-like stored a centre crop: evaluating them again
    rebuilds that, not today's rule (the stored and rebuilt preprocessing must agree)."""
    import json

    from helpers import FIXTURES
    from train import setup

    _classes(tmp_path, ["a", "b"], per_class=4, size=16)
    meta = json.loads((FIXTURES / "checkpoint_v0" / "checkpoints" / "3" / "meta" / "metadata").read_text())
    old = data.load({"name": f"folder:{tmp_path}", "holdout_fraction": 0.25, "augment": "imagenet"}, split="test",
                    train=False, batch_size=2, image_shape=(16, 16, 3), preprocessing={"eval_resize": "center_crop"})
    meta["config"]["data"].update(name=f"folder:{tmp_path}", holdout_fraction=0.25, augment="auto")
    meta.update(preprocessing=old.preprocessing, class_names=["a", "b"], num_classes=2, model_kwargs={"num_classes": 2})
    pipe = setup.checkpoint_pipeline(meta, batch_size=2)
    assert pipe.preprocessing == old.preprocessing and pipe.preprocessing["eval_resize"] == "center_crop"
