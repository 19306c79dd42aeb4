"""train.data.sources, what a user sees when opening a dataset: a class folder without images is
skipped with a warning by default (``data.empty_classes``), or stops the run, or stays a class; an
unprepared TFDS dataset is one clear error without TFDS's warnings about folders that do not exist."""
import logging

import numpy as np
import pytest
from PIL import Image

from train import data


def _folder(root):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "eel"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "empty_class").mkdir()
    (root / "empty_class" / "notes.txt").write_text("not an image")
    return root


def _load(root, split="train", **fields):
    return data.load({"name": f"folder:{root}", "holdout_fraction": 0.25, **fields}, split=split,
                     train=split == "train", batch_size=2, image_shape=(24, 24, 3))


def test_an_empty_class_folder_is_skipped_with_a_warning(tmp_path, caplog):
    root = _folder(tmp_path / "pets")
    with caplog.at_level(logging.WARNING):
        train_pipe = _load(root)
    assert train_pipe.class_names == ("cat", "dog", "eel") and train_pipe.num_examples == 9
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipping 1 class folder(s) without images" in warnings[0]
    assert str(root / "empty_class") in warnings[0] and "data.empty_classes" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        eval_pipe = _load(root, split="test")  # the same classes, said once
    assert eval_pipe.class_names == train_pipe.class_names and not caplog.records


def test_empty_class_folders_with_split_folders(tmp_path):
    _folder(tmp_path / "train")
    _folder(tmp_path / "test")
    assert _load(tmp_path).class_names == _load(tmp_path, split="test").class_names == ("cat", "dog", "eel")


def test_an_empty_class_folder_can_stop_the_run_or_stay_a_class(tmp_path):
    root = _folder(tmp_path / "pets")
    with pytest.raises(ValueError, match=r"class folder\(s\) without images: .*empty_class"):
        _load(root, empty_classes="error")
    assert _load(root, empty_classes="keep").class_names == ("cat", "dog", "eel", "empty_class")
    with pytest.raises(ValueError, match=r"data.empty_classes='sometimes': allowed values are 'skip', 'error', 'keep'"):
        _load(root, empty_classes="sometimes")


def test_an_unprepared_tfds_dataset_gives_no_warnings_about_missing_folders(tmp_path, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError, match="'mnist' is not prepared"):
        data.load({"name": "mnist", "data_dir": str(tmp_path)}, split="train", train=True, batch_size=8,
                  image_shape=(28, 28, 1))
    assert not [r.getMessage() for r in caplog.records if "dataset_info.json" in r.getMessage()]
