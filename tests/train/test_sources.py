"""train.data.sources, what a user sees when opening a dataset. TFDS: TFDS's mock data and a dataset
prepared as ArrayRecord on disk, both read offline and without TensorFlow; an unprepared dataset is
one clear error (with the command that prepares it), without TFDS's warnings about folders that do
not exist. Class folders: a corrupt file is left out and counted, a truncated one masked (or either
stops the run); a class folder without images is skipped with a warning by default
(``data.empty_classes``), or stops the run, or stays a class."""
import logging

import numpy as np
import pytest
from PIL import Image

from helpers import data_cfg as cfg, load_data as load, png_bytes, take
from train import data
from train.data import sources


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


# ------------------------------------------------------------------------------------------------ TFDS
def test_tfds_mock_data_real_path_offline(no_network):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        for cache in (True, False):
            c = cfg(name="cifar10", cache=cache)
            pipe = load(c, batch_size=16, image_shape=(32, 32, 3))
            assert pipe.num_examples == 40 and pipe.num_classes == 10 and pipe.steps_per_epoch == 2
            assert pipe.preprocessing["augment"] == "cifar"
            assert pipe.preprocessing["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
            assert isinstance(pipe.source, sources.ArraySource if cache else sources.TfdsSource)
            b = next(iter(pipe))
            assert b["image"].shape == (16, 32, 32, 3) and b["label"].dtype == np.int32
            assert 0 <= b["label"].min() and b["label"].max() < 10
            ev = list(load(c, split="test", train=False, batch_size=16, image_shape=(32, 32, 3)))
            assert len(ev) == 3 and sum(e["mask"].sum() for e in ev) == 40
        # variable-size images (ImageNet family): random-resized crop / centre crop to the model's size
        c = cfg(name="imagenette")
        pipe = load(c, batch_size=8, image_shape=(48, 48, 3))
        assert pipe.preprocessing["augment"] == "imagenet" and pipe.preprocessing["eval_resize"] == "center_crop"
        assert isinstance(pipe.source, sources.TfdsSource)
        assert next(iter(pipe))["image"].shape == (8, 48, 48, 3)
        ev = load(c, split="validation", train=False, batch_size=8, image_shape=(48, 48, 3))
        assert next(iter(ev))["image"].shape == (8, 48, 48, 3)
        # MNIST to a 3-channel 32x32 model
        b = next(iter(load(cfg(name="mnist"), batch_size=8, image_shape=(32, 32, 3))))
        assert b["image"].shape == (8, 32, 32, 3)
        data.prepare("cifar10")  # the preparation helper (a no-op under mock_data)


@pytest.fixture(scope="module")
def prepared_tfds(tmp_path_factory):
    """A real TFDS dataset prepared as ArrayRecord on disk, without tensorflow (PNG bytes from PIL)."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")

    class ZooTestShapes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["circle", "square", "star"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(30, 0), "validation": self._generate_examples(7, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                img = rng.integers(0, 256, (20 + i % 5, 30 - i % 4, 3), dtype=np.uint8)
                yield i, {"image": png_bytes(img), "label": i % 3}

    ZooTestShapes(data_dir=str(root), file_format="array_record").download_and_prepare()
    return "zoo_test_shapes", str(root)


def test_tfds_prepared_array_record_read_tf_free(prepared_tfds, no_network):
    import sys

    name, root = prepared_tfds
    c = cfg(name=name, data_dir=root)
    pipe = load(c, batch_size=10, image_shape=(24, 24, 3))
    assert pipe.num_examples == 30 and pipe.class_names == ("circle", "square", "star")
    assert isinstance(pipe.source, sources.TfdsSource) and pipe.source.batched
    batches = take(pipe, 3)
    assert all(b["image"].shape == (10, 24, 24, 3) for b in batches)
    ev = list(load(c, split="validation", train=False, batch_size=4, image_shape=(24, 24, 3)))
    assert len(ev) == 2 and sum(b["mask"].sum() for b in ev) == 7
    np.testing.assert_array_equal(np.bincount(np.concatenate([b["label"] for b in ev])[:7]), [3, 2, 2])
    with pytest.raises(ValueError, match="split 'test'.*available splits.*train.*validation"):
        load(c, split="test", train=False, batch_size=4, image_shape=(24, 24, 3))
    import importlib.util
    if importlib.util.find_spec("tensorflow") is None:
        assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None


def test_unprepared_tfds_dataset_fails_fast_with_instructions(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as e:
        load(cfg(name="mnist", data_dir=str(tmp_path)), batch_size=8)
    msg = str(e.value)
    assert "'mnist' is not prepared" in msg and str(tmp_path) in msg
    assert f"tfds build mnist --data_dir={tmp_path} --file_format=array_record" in msg
    with pytest.raises(FileNotFoundError) as e:
        load(cfg(name="imagenet2012", data_dir=str(tmp_path), manual_dir="/data/ilsvrc"), batch_size=8,
             image_shape=(224, 224, 3))
    assert "--manual_dir=/data/ilsvrc" in str(e.value) and "ILSVRC2012_img_train.tar" in str(e.value)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*closest TFDS names: cifar10"):
        load(cfg(name="cifar11", data_dir=str(tmp_path)), batch_size=8)


# ------------------------------------------------------------------------------------------------ folders
def _make_folder(root, corrupt=True, truncated=False):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "eel"]):
        d = root / name
        d.mkdir(parents=True)
        for i in range(5):
            img = rng.integers(0, 256, (30 + 3 * i, 40 - 2 * i, 3), dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i}.png" if i % 2 else d / f"{i}.jpg")
        (d / "notes.txt").write_text("not an image, ignored")
    if corrupt:
        (root / "dog" / "broken.jpg").write_bytes(b"this is not a jpeg at all")
    if truncated:  # passes the header check, fails to decode
        full = png_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), fmt="JPEG")
        (root / "eel" / "truncated.jpg").write_bytes(full[: len(full) // 2])


def test_folder_source_with_corrupt_file(tmp_path):
    _make_folder(tmp_path)
    c = cfg(name=f"folder:{tmp_path}", holdout_fraction=0.2)
    pipe = load(c, batch_size=4, image_shape=(32, 32, 3))
    assert pipe.class_names == ("cat", "dog", "eel")
    assert len(pipe.skipped) == 1 and pipe.skipped[0][0].endswith("broken.jpg")
    ev = load(c, split="test", train=False, batch_size=4, image_shape=(32, 32, 3))
    assert pipe.num_examples + ev.num_examples == 15  # the corrupt file is left out, counted
    assert ev.num_examples == 3  # one per class held out
    assert not set(pipe.source.paths) & set(ev.source.paths)
    for b in take(pipe, 5) + list(ev):
        assert b["image"].shape[1:] == (32, 32, 3) and np.isfinite(b["image"]).all()
    with pytest.raises(ValueError, match="1 unreadable image.*broken.jpg"):
        load(cfg(name=f"folder:{tmp_path}", on_corrupt="error"), batch_size=4, image_shape=(32, 32, 3))


def test_folder_decode_failure_is_masked_or_raises(tmp_path, caplog):
    _make_folder(tmp_path / "train", corrupt=False, truncated=True)
    _make_folder(tmp_path / "test", corrupt=False)
    c = cfg(name=f"folder:{tmp_path}")
    pipe = load(c, split="train", train=False, batch_size=16, image_shape=(16, 16, 3))
    assert pipe.num_examples == 16  # split folders are used as they are: no holdout
    with caplog.at_level(logging.WARNING, logger="train.data"):
        b, again = next(iter(pipe)), next(iter(pipe))   # two epochs
    bad = [i for i, p in enumerate(pipe.source.paths) if p.endswith("truncated.jpg")]
    for batch in (b, again):
        assert batch["mask"].sum() == 15 and batch["mask"][bad[0]] == 0 and (batch["image"][bad[0]] == 0).all()
    assert pipe.source.decode_failures == 1
    assert [r.getMessage().count("truncated.jpg") for r in caplog.records if "skipping" in r.getMessage()] == [1]
    c.on_corrupt = "error"
    with pytest.raises(ValueError, match="cannot read image .*truncated.jpg"):
        next(iter(load(c, split="train", train=False, batch_size=16, image_shape=(16, 16, 3))))
    assert load(c, split="test", train=False, batch_size=4, image_shape=(16, 16, 3)).num_examples == 15
