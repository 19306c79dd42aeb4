"""train.data: the mnist5k source, preprocessing, determinism, resume, sharding, padding, synthetic data
and grain worker processes. The sources that read files (TFDS, folders): test_sources.py. No network."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from configs import default
from helpers import data_cfg as cfg, load_data as load, reference, take
from train import data
from train.data import sources, transforms


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in ("image", "label", "mask"):
            np.testing.assert_array_equal(x[k], y[k])


# ------------------------------------------------------------------------------------------------ mnist5k
def test_mnist5k_content_and_split():
    images, labels = sources._mnist5k_arrays()
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    train, test = data.mnist5k_split_indices("train"), data.mnist5k_split_indices("test")
    assert len(train) == 4000 and len(test) == 1000 and not set(train) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[train]), [400] * 10)
    np.testing.assert_array_equal(np.bincount(labels[test]), [100] * 10)
    np.testing.assert_array_equal(test, data.mnist5k_split_indices("test"))  # fixed
    src = data.open_source("mnist5k", "test", image_shape=(28, 28, 1))
    x, y, ok = src.read(np.arange(src.num_examples))
    assert x.dtype == np.uint8 and 0 <= x.min() and x.max() <= 255 and ok.all()
    assert set(np.unique(y)) == set(range(10))
    with pytest.raises(ValueError, match="'train'.*'test'"):
        data.open_source("mnist5k", "validation", image_shape=(28, 28, 1))


def test_mnist5k_batches_format_and_normalisation():
    pipe = load(cfg(), batch_size=100)
    assert (pipe.num_examples, pipe.num_classes, pipe.steps_per_epoch) == (4000, 10, 40)
    assert pipe.class_names == tuple(str(i) for i in range(10))
    assert pipe.preprocessing["augment"] == "none"  # MNIST's 'auto'
    json.dumps(pipe.preprocessing)
    b = next(iter(pipe))
    assert set(b) == {"image", "label", "mask"}
    assert b["image"].shape == (100, 28, 28, 1) and b["image"].dtype == np.float32
    assert b["label"].shape == (100,) and b["label"].dtype == np.int32
    assert b["mask"].dtype == np.float32 and (b["mask"] == 1).all()
    assert abs(b["image"].mean()) < 0.2 and 0.8 < b["image"].std() < 1.2
    assert b["image"].min() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)


def test_from_config_uses_the_model_input_shape():
    c = default.get_config()  # lenet5 on mnist5k
    assert data.model_image_shape(c) == (28, 28, 1)
    c.model_kwargs.in_channels = 3
    c.data.image_size = 32
    assert data.model_image_shape(c) == (32, 32, 3)
    c.data.prefetch = 0
    tr = data.from_config(c, train=True, process_index=0, process_count=1)
    ev = data.from_config(c, train=False, process_index=0, process_count=1)
    assert (tr.split, tr.batch_size, tr.steps_per_epoch) == ("train", 128, 31)
    assert (ev.split, ev.batch_size, ev.steps_per_epoch) == ("test", 256, 4)
    assert next(iter(ev))["image"].shape == (256, 32, 32, 3)
    assert ev.element_spec["image"] == ((256, 32, 32, 3), np.float32)


def test_eval_crop_follows_the_model():
    """Inception v3: 299x299 input, evaluation Resize(342) + CenterCrop(299) (the model's resize_size);
    other ImageNet models 224 of 256."""
    c = default.get_config()
    c.model, c.data.name, c.data.prefetch = "inception_v3", "synthetic", 0
    assert data.model_image_shape(c) == (299, 299, 3) and data.model_crop_fraction(c) == 299 / 342
    ev = data.from_config(c, train=False, process_index=0, process_count=1)
    assert ev.preprocessing["image_size"] == [299, 299] and ev.preprocessing["crop_fraction"] == 299 / 342
    c.model = "resnet50"
    assert data.model_crop_fraction(c) == 0.875
    # on a 342 x 456 picture (smooth ramps: bilinear sampling at the box's half pixels keeps them) the centre
    # crop is its central 299 x 299, unresized
    pp = transforms.make_preprocessing(dataset="x", image_shape=(299, 299, 3), source_channels=3, mean=(0, 0, 0),
                                       std=(1, 1, 1), eval_resize="center_crop", augment="none",
                                       crop_fraction=299 / 342)
    yy, xx = np.mgrid[0:342, 0:456]
    img = np.stack([xx * 255 / 455, yy * 255 / 341, np.full_like(xx, 7)], -1).round().astype(np.uint8)
    out = data.preprocess_eval(img, pp)[0] * 255
    np.testing.assert_allclose(out, img[21:320, 78:377].astype(np.float32), atol=1.0)
    with pytest.raises(ValueError, match=r"^crop_fraction=1\.5: must be in \(0, 1\]$"):
        transforms.make_preprocessing(dataset="x", image_shape=(8, 8, 3), source_channels=3, mean=(0, 0, 0),
                                      std=(1, 1, 1), eval_resize="center_crop", augment="none", crop_fraction=1.5)

@pytest.mark.parametrize("name, resize", [  # torchvision 0.28: resize_size of the default weights' transforms
    ("efficientnet_b0", 256), ("efficientnet_b1", 255), ("efficientnet_b2", 288), ("efficientnet_b3", 320),
    ("efficientnet_b4", 384), ("efficientnet_b5", 456), ("efficientnet_b6", 528), ("efficientnet_b7", 600),
    ("efficientnet_v2_s", 384), ("efficientnet_v2_m", 480), ("efficientnet_v2_l", 480),
    ("mnasnet0_5", 256), ("mnasnet0_75", 232), ("mnasnet1_0", 256), ("mnasnet1_3", 232),
])
def test_the_pipeline_takes_each_variants_input_size_and_resize(name, resize):
    c = default.get_config()
    c.model = name
    size = reference()["models"][name]["input_size"]  # 224 ... 600 (EfficientNet: per variant)
    assert data.model_image_shape(c) == (size, size, 3) and data.model_crop_fraction(c) == size / resize


# ------------------------------------------------------------------------------------------------ preprocessing
def test_resize_and_channels():
    pipe = load(cfg(), split="test", train=False, batch_size=50, image_shape=(32, 32, 3))
    b = next(iter(pipe))
    assert b["image"].shape == (50, 32, 32, 3)
    np.testing.assert_array_equal(b["image"][..., 0], b["image"][..., 2])  # gray replicated
    assert pipe.preprocessing["channel_conversion"] == "gray_to_rgb"
    # resize matrices: rows sum to 1, constants stay constant
    for n_in, n_out in [(28, 32), (32, 28), (500, 224), (7, 7)]:
        np.testing.assert_allclose(transforms._resize_matrix(n_in, n_out).sum(1), 1.0, rtol=1e-5)
    const = np.full((2, 28, 28, 1), 77, np.uint8)
    np.testing.assert_allclose(transforms.resize_batch(const, (227, 227)), 77.0, rtol=1e-5)
    # RGB -> gray for a 1-channel model
    pp = transforms.make_preprocessing(dataset="x", image_shape=(8, 8, 1), source_channels=3,
                                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), eval_resize="resize",
                                       augment="none")
    out = transforms.apply(np.full((1, 8, 8, 3), 255, np.uint8), pp)
    assert out.shape == (1, 8, 8, 1)
    np.testing.assert_allclose(out, (1.0 - 0.5) / 0.25, rtol=1e-5)


@pytest.mark.parametrize("augment,shape", [("mnist", (28, 28, 1)), ("cifar", (32, 32, 3)),
                                           ("imagenet", (40, 40, 3)), ("none", (32, 32, 3))])
def test_augmentations_keep_shapes_and_are_off_in_eval(augment, shape):
    c = cfg(name="synthetic", augment=augment, synthetic_num_examples=64)
    train = load(c, batch_size=16, image_shape=shape)
    evals = load(c, train=False, batch_size=16, image_shape=shape)
    noaug = load(cfg(name="synthetic", augment="none", synthetic_num_examples=64), batch_size=16, image_shape=shape)
    bt, be, bn = next(iter(train)), next(iter(evals)), next(iter(noaug))
    for b in (bt, be):
        assert b["image"].shape == (16, *shape) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and b["mask"].dtype == np.float32
    assert train.preprocessing["augment"] == augment
    # same seed -> same shuffled examples; augmentation is the only difference from 'none'
    np.testing.assert_array_equal(bt["label"], bn["label"])
    if augment == "none":
        np.testing.assert_array_equal(bt["image"], bn["image"])
    else:
        assert not np.array_equal(bt["image"], bn["image"])
    # eval: no augmentation: equals the plain eval transform of the stored images, in order
    src = evals.source
    raw, _, _ = src.read(np.arange(16))
    np.testing.assert_array_equal(be["image"], data.preprocess_eval(raw, evals.preprocessing))


def test_cifar_augmentation_is_crop_of_padded_and_flip():
    kw = dict(batch_size=32, image_shape=(32, 32, 3), seed=9)
    aug = next(iter(load(cfg(name="synthetic", augment="cifar", synthetic_num_examples=64), **kw)))
    plain = next(iter(load(cfg(name="synthetic", augment="none", synthetic_num_examples=64), **kw)))
    np.testing.assert_array_equal(aug["label"], plain["label"])  # same seed: same examples, same order
    pp = load(cfg(name="synthetic", augment="none", synthetic_num_examples=64), **kw).preprocessing
    zero = transforms.normalize(np.zeros((1, 1, 1, 3), np.uint8), pp)[0, 0, 0]
    flips = 0
    for a, p in zip(aug["image"], plain["image"]):
        padded = np.broadcast_to(zero, (40, 40, 3)).copy()
        padded[4:36, 4:36] = p
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                if np.array_equal(a, padded[dy:dy + 32, dx:dx + 32][:, ::-1] if f else padded[dy:dy + 32, dx:dx + 32])]
        assert hits, "not a (flipped) crop of the zero-padded image"
        flips += all(f for _, _, f in hits)
    assert 4 <= flips <= 28  # about half are mirrored


def test_preprocess_eval_single_user_image_matches_pipeline():
    pipe = load(cfg(), split="test", train=False, batch_size=1000)
    b = next(iter(pipe))
    raw, _, _ = pipe.source.read(np.arange(3))
    one = data.preprocess_eval(raw[1, :, :, 0], pipe.preprocessing)  # (h, w) grayscale
    assert one.shape == (1, 28, 28, 1)
    np.testing.assert_array_equal(one[0], b["image"][1])
    rgb = np.repeat(raw[1], 3, axis=-1)  # an RGB picture of the same digit: converted to gray first
    np.testing.assert_allclose(data.preprocess_eval(rgb, pipe.preprocessing)[0], b["image"][1], atol=1e-5)
    big = data.preprocess_eval(np.zeros((300, 200, 4), np.uint8), pipe.preprocessing)  # RGBA, any size
    assert big.shape == (1, 28, 28, 1)
    stored = json.loads(json.dumps(pipe.preprocessing))  # as a checkpoint stores it
    np.testing.assert_array_equal(data.preprocess_eval(raw, stored), b["image"][:3])
    with pytest.raises(ValueError, match="uint8"):
        data.preprocess_eval(np.zeros((28, 28), np.float32), pipe.preprocessing)
    # PIL's "Cannot handle this data type: (1, 1, 192)" for channels first; an empty image became black
    with pytest.raises(ValueError, match=r"^images: an image must be .* got shape \(3, 40, 30\) \(channels first"):
        data.preprocess_eval(np.zeros((2, 3, 40, 30), np.uint8), pipe.preprocessing)
    with pytest.raises(ValueError, match=r"^images: an image must be .* c in 1..4 .* got shape \(9, 9, 5\)$"):
        data.preprocess_eval(np.zeros((9, 9, 5), np.uint8), pipe.preprocessing)
    for empty in ((0, 0, 3), (0, 5, 3), (0, 0)):
        with pytest.raises(ValueError, match=r"^images: an image has no pixels"):
            data.preprocess_eval(np.zeros(empty, np.uint8), pipe.preprocessing)


# ------------------------------------------------------------------------------------------------ determinism
def _torchvision_resize_centre_crop(img: np.ndarray, resize: int, crop: int, resample) -> np.ndarray:
    """torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` on a PIL image, written with PIL from
    torchvision's definitions: the short side to ``resize``, the long side ``int(resize * long / short)``,
    then the crop at ``int(round((size - crop) / 2))`` on each axis."""
    h, w = img.shape[:2]
    new_w, new_h = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return np.asarray(Image.fromarray(img).resize((new_w, new_h), resample))[top:top + crop, left:left + crop]


@pytest.mark.parametrize("model, tag, h, w", [("efficientnet_b1", "IMAGENET1K_V1", 320, 320),  # 256 -> 240, bicubic
                                              ("resnet50", "IMAGENET1K_V2", 464, 464),         # 232 -> 224, bilinear
                                              ("resnet50", "IMAGENET1K_V2", 375, 500),         # ImageNet's usual shapes
                                              ("resnet50", "IMAGENET1K_V1", 500, 375),
                                              ("inception_v3", "IMAGENET1K_V1", 299, 299),     # 342 - 299 odd
                                              ("inception_v3", "IMAGENET1K_V1", 375, 500),
                                              ("efficientnet_b1", "IMAGENET1K_V2", 517, 333),  # 255 -> 240, odd
                                              ("resnet50", "IMAGENET1K_V2", 60, 80)])          # smaller than the crop
def test_published_weights_preprocessing_is_torchvisions_resize_then_centre_crop(model, tag, h, w):
    """torchvision's weights.transforms() on a PIL image (resize the short side to resize_size with the
    entry's filter, crop crop_size in the centre, normalise), to within one level of 255: the zoo
    resizes the same box in one step, so only the intermediate 8-bit rounding differs."""
    from zoo.weights import catalogue

    e = catalogue.entry(model, tag)
    pp = transforms.for_weights(e)
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    img = np.clip(smooth + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)   # a photograph's texture
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[e.interpolation]
    ref = _torchvision_resize_centre_crop(img, e.resize_size, e.crop_size, resample)
    ref = (ref / 255.0 - np.array(e.mean)) / np.array(e.std)
    out = transforms.preprocess_eval(img, pp)
    assert out.shape == (1, e.crop_size, e.crop_size, 3)
    level = 1.0 / 255.0 / np.array(e.std)
    assert (np.abs(out[0] - ref) <= level * 1.01 + 1e-5).all()
    assert np.abs(out[0] - ref).mean() < 0.5 * level.min()   # a box off by half a pixel: 1.4-4 levels on average
    with pytest.raises(ValueError, match="interpolation='nearest': allowed values are"):
        transforms.make_preprocessing(dataset="x", image_shape=(8, 8, 3), source_channels=3, mean=[0] * 3,
                                      std=[1] * 3, eval_resize="center_crop", augment="none", interpolation="nearest")


def test_preprocessing_stored_before_interpolation_existed_reads_as_bilinear():
    pp = transforms.make_preprocessing(dataset="x", image_shape=(16, 16, 3), source_channels=3, mean=[0.5] * 3,
                                       std=[0.25] * 3, eval_resize="center_crop", augment="none")
    old = {k: v for k, v in pp.items() if k != "interpolation"}
    img = (np.random.default_rng(1).random((40, 30, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(transforms.preprocess_eval(img, old), transforms.preprocess_eval(img, pp))
    assert pp["interpolation"] == "bilinear" and transforms.complete(old) == pp


def test_same_seed_same_batches_new_shuffle_each_epoch():
    c = cfg()
    a, b = take(load(c, batch_size=500, seed=3), 16), take(load(c, batch_size=500, seed=3), 16)
    assert_batches_equal(a, b)
    other = take(load(c, batch_size=500, seed=4), 1)
    assert not np.array_equal(a[0]["label"], other[0]["label"]) or not np.array_equal(a[0]["image"], other[0]["image"])
    # 8 steps per epoch; each epoch visits every example once (4000 / 500, nothing dropped) in a new order
    imgs = [np.concatenate([x["image"] for x in a[e * 8:(e + 1) * 8]]).reshape(4000, -1) for e in (0, 1)]
    keys = [np.sort(np.ascontiguousarray(i).view(np.dtype((np.void, i.shape[1] * 4))).ravel()) for i in imgs]
    np.testing.assert_array_equal(keys[0], keys[1])
    assert not np.array_equal(imgs[0], imgs[1])
    # num_epochs ends the iterator
    assert len(list(load(c, batch_size=1000, num_epochs=2))) == 8


def test_exact_resume_from_saved_state():
    c = cfg(name="synthetic", augment="cifar", synthetic_num_examples=200)
    pipe = load(c, batch_size=32, image_shape=(32, 32, 3), seed=7)  # 6 steps per epoch
    it = iter(pipe)
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # as saved with a checkpoint
    expected = [next(it) for _ in range(9)]  # crosses an epoch boundary
    fresh = iter(load(c, batch_size=32, image_shape=(32, 32, 3), seed=7))  # a new process, say
    fresh.set_state(state)
    assert_batches_equal([next(fresh) for _ in range(9)], expected)
    # a state from another pipeline is refused: one line naming the config fields, saved and current values
    other = iter(load(c, batch_size=64, image_shape=(32, 32, 3), seed=7))
    with pytest.raises(ValueError) as e:
        other.set_state(state)
    assert str(e.value) == ("the checkpoint's input iterator is from a different pipeline (saved -> now): batch_size "
                            "32 -> 64; nothing was changed. Keep the saved values, or use another --workdir to start "
                            "a new run with these")
    another = iter(load(cfg(name="synthetic", augment="cifar", synthetic_num_examples=256), batch_size=32,
                        image_shape=(32, 32, 3), seed=8))
    with pytest.raises(ValueError, match=r"\(saved -> now\): examples in data\.name 200 -> 256; seed 7 -> 8; "
                                         r"nothing was changed\. Keep the saved values, or use another --workdir"):
        another.set_state(state)


def test_resume_with_prefetch_threads_and_grain_checkpoint_handler(tmp_path):
    import grain

    c = cfg(name="synthetic", augment="cifar", synthetic_num_examples=256)
    c.prefetch = 2
    pipe = load(c, batch_size=32, image_shape=(32, 32, 3), seed=1)
    ref = take(load(cfg(name="synthetic", augment="cifar", synthetic_num_examples=256), batch_size=32,
                    image_shape=(32, 32, 3), seed=1), 12)
    it = iter(pipe)
    got = [next(it) for _ in range(4)]
    handler = grain.checkpoint.CheckpointHandler()
    handler.save(tmp_path, item=it)
    got += [next(it) for _ in range(8)]
    assert_batches_equal(got, ref)  # threads and prefetch change nothing
    restored = handler.restore(tmp_path, item=iter(pipe))
    assert_batches_equal([next(restored) for _ in range(8)], ref[4:])


# ------------------------------------------------------------------------------------------------ multi-process
@pytest.mark.parametrize("pc", [2, 4])
def test_process_shards_disjoint_complete_and_topology_independent(pc):
    c = cfg(name="synthetic", augment="cifar", synthetic_num_examples=256)
    kw = dict(batch_size=64, image_shape=(16, 16, 3), seed=5)
    whole = take(load(c, **kw), 8)  # 2 epochs
    parts = [take(load(c, pi=p, pc=pc, **kw), 8) for p in range(pc)]
    for s in range(8):
        local = [parts[p][s] for p in range(pc)]
        assert all(b["image"].shape[0] == 64 // pc for b in local)
        for k in ("image", "label", "mask"):  # the processes' parts make up the one-process batch exactly
            np.testing.assert_array_equal(np.concatenate([b[k] for b in local]), whole[s][k])
    # per epoch, the processes' shards are disjoint and together cover the epoch
    src = load(c, **kw).source
    ids = {tuple(img.ravel()): i for i, img in enumerate(src.images)}
    eval_parts = [list(load(c, train=False, pi=p, pc=pc, batch_size=48, image_shape=(16, 16, 3))) for p in range(pc)]
    seen = []
    for p in range(pc):
        raw = np.concatenate([b["image"][b["mask"] > 0] for b in eval_parts[p]])
        inv = raw * np.asarray(src.std, np.float32) + np.asarray(src.mean, np.float32)
        seen.append([ids[tuple(np.rint(x * 255).astype(np.uint8).ravel())] for x in inv])
    flat = [i for s in seen for i in s]
    assert sorted(flat) == list(range(256))  # disjoint and complete
    with pytest.raises(ValueError, match="multiple of process_count"):
        load(c, batch_size=30, pi=0, pc=4)


def test_padded_eval_counts_every_example_once():
    pipe = load(cfg(), split="test", train=False, batch_size=256)
    batches = list(pipe)
    assert pipe.steps_per_epoch == len(batches) == 4
    assert all(b["image"].shape[0] == 256 for b in batches)
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.sum() == 1000 and (masks[:1000] == 1).all() and (masks[1000:] == 0).all()
    assert (batches[-1]["image"][232:] == 0).all() and (batches[-1]["label"][232:] == 0).all()
    labels = np.concatenate([b["label"] for b in batches])[masks > 0]
    np.testing.assert_array_equal(np.bincount(labels), [100] * 10)
    # three processes: 1000 examples, global batch 300 -> 4 steps, the last one mostly padding
    parts = [list(load(cfg(), split="test", train=False, batch_size=300, pi=p, pc=3)) for p in range(3)]
    assert {len(p) for p in parts} == {4}
    total = sum(b["mask"].sum() for p in parts for b in p)
    assert total == 1000
    hist = np.bincount(np.concatenate([b["label"][b["mask"] > 0] for p in parts for b in p]), minlength=10)
    np.testing.assert_array_equal(hist, [100] * 10)


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_any_shape_and_classes():
    c = cfg(name="synthetic", synthetic_num_examples=50, synthetic_num_classes=7)
    pipe = load(c, batch_size=10, image_shape=(20, 12, 3))
    assert (pipe.num_examples, pipe.num_classes) == (50, 7)
    b = next(iter(pipe))
    assert b["image"].shape == (10, 20, 12, 3) and b["label"].max() < 7
    a1 = data.open_source("synthetic", "train", image_shape=(20, 12, 3), synthetic_num_classes=7,
                          synthetic_num_examples=50)
    a2 = data.open_source("synthetic", "train", image_shape=(20, 12, 3), synthetic_num_classes=7,
                          synthetic_num_examples=50)
    np.testing.assert_array_equal(a1.images, a2.images)


# ------------------------------------------------------------------------------------------------ workers
@pytest.mark.integration  # grain worker processes
def test_worker_processes_give_the_same_batches_and_resume():
    c = cfg(name="synthetic", augment="cifar", synthetic_num_examples=64)
    ref = take(load(c, batch_size=16, image_shape=(8, 8, 3), seed=2), 9)
    c.num_workers = 1
    pipe = load(c, batch_size=16, image_shape=(8, 8, 3), seed=2)
    it, it2 = iter(pipe), None
    try:
        got = [next(it) for _ in range(4)]
        state = json.loads(json.dumps(it.get_state()))
        got += [next(it) for _ in range(5)]
        assert_batches_equal(got, ref)
        it.close()
        it2 = iter(pipe)
        it2.set_state(state)
        assert_batches_equal([next(it2) for _ in range(5)], ref[4:])
    finally:
        it.close()
        if it2 is not None:
            it2.close()


def test_worker_counts_are_checked_and_capped(caplog, monkeypatch):
    """-3 was taken as 0 without a word; 500 on 2 cores started for minutes without a word."""
    import logging

    from train.data import pipeline

    for bad in (-3, 1.5, True):
        with pytest.raises(ValueError, match=rf"^data\.num_workers={bad!r}: must be an int >= 0"):
            pipeline._workers(bad)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="train"):
        assert pipeline._workers(8) == 8 and not caplog.records
        assert pipeline._workers(500) == 8
    assert caplog.messages == ["data.num_workers=500: this machine has 2 CPU core(s); using 8 worker processes"]


@pytest.mark.parametrize("bad", [-1, -3])
def test_a_negative_prefetch_is_refused_naming_the_field(bad):
    """``data.prefetch=-1`` was taken as 0 without a word (num_workers=-1 was refused)."""
    with pytest.raises(ValueError, match=rf"^data\.prefetch={bad!r}: must be an integer >= 0$"):
        load(cfg(name="synthetic", synthetic_num_examples=64, prefetch=bad))


@pytest.mark.parametrize("model, kwargs, size, smallest, default_size", [
    ("lenet5", {}, -1, 28, 28), ("lenet5", {}, 0, 28, 28), ("lenet5", {}, 4, 28, 28),
    ("resnet18", {"small_input": True}, 7, 8, 32), ("resnet18", {}, 31, 32, 224)])
def test_an_image_size_below_the_models_smallest_input_is_refused_naming_the_field(model, kwargs, size, smallest,
                                                                                    default_size):
    """0 once meant the model's default (silently), -1 failed in numpy naming no field."""
    c = default.get_config()
    c.model = model
    c.model_kwargs.update(kwargs)
    c.data.image_size = size
    with pytest.raises(ValueError, match=rf"^data\.image_size={size}: must be an integer >= {smallest} \({model}'s "
                                         rf"smallest input\), or none for its default {default_size}$"):
        data.model_image_shape(c)
    c.data.image_size = smallest
    assert data.model_image_shape(c)[:2] == (smallest, smallest)
    c.data.image_size = None
    assert data.model_image_shape(c)[:2] == (default_size, default_size)
