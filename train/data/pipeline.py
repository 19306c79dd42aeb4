"""The grain pipeline: batch index -> global batch of example indices -> process-local, preprocessed batch.

    MapDataset.range(steps_per_epoch) -> repeat(num_epochs) (train) -> map_with_index(_BatchLoader)
      -> to_iter_dataset(ReadOptions: threads, prefetch) -> mp_prefetch (num_workers > 0)
      -> _CheckedIterDataset (the iterator state carries a fingerprint of the pipeline)

The elements of the grain dataset are whole batches: ``_BatchLoader`` turns batch index k into the
example indices of global batch k (train: epoch k // steps, a numpy permutation seeded by
(seed, epoch), reshuffled every epoch, remainder dropped; eval: in order, the last batch short), reads
this process's slice and preprocesses it with vectorised numpy. (grain's per-example
``range().shuffle().batch()`` spends tens of microseconds per example on index bookkeeping alone,
which caps MNIST near 10,000 examples/s on 2 cores; batch-level elements run at > 100,000.)

* Every process builds the same sequence of GLOBAL batches and reads only its slice
  ``[process_index * B_local, (process_index + 1) * B_local)`` of each: the processes' shards are
  disjoint and together cover every batch, and a global batch's content (augmentation included: its
  random numbers are drawn for the whole global batch from (seed, batch index)) does not depend on
  the number of processes.
* Eval: the last global batch is padded (``mask`` 0, image 0, label 0), so every example is counted
  exactly once.
* Element k is a pure function of (config, seed, k): the iterator state is grain's ``next_index``,
  and restoring it replays exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from typing import Any, Sequence

import grain
import numpy as np

from configs import default
from train.data import sources, transforms, workers
from zoo.checks import check_nonnegative_int

log = logging.getLogger("train")

_STATE_KEY = "pipeline"


def _sub_seed(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag]).generate_state(1)[0])


class _BatchLoader:
    """map_with_index transform: (batch index k, _) -> this process's part of global batch k."""

    def __init__(self, source: sources.Source, pp: dict, *, train: bool, global_batch: int, local_batch: int,
                 steps_per_epoch: int, process_index: int, shuffle_seed: int, aug_seed: int):
        self.source, self.pp, self.train = source, pp, train
        self.global_batch, self.local_batch = global_batch, local_batch
        self.steps_per_epoch = steps_per_epoch
        self.start = process_index * local_batch
        self.shuffle_seed, self.aug_seed = shuffle_seed, aug_seed
        self.augment = pp["augment"] if train else "none"
        self._perms: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self):  # pickled into grain worker processes: no lock, no cache
        state = dict(self.__dict__)
        state["_perms"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the examples in train epoch ``epoch`` (cached: the last two epochs)."""
        with self._lock:
            perm = self._perms.get(epoch)
        if perm is None:
            n = self.source.num_examples
            perm = np.random.default_rng([self.shuffle_seed, epoch]).permutation(n).astype(
                np.int32 if n < 2**31 else np.int64)
            with self._lock:
                self._perms[epoch] = perm
                for old in sorted(self._perms)[:-2]:
                    del self._perms[old]
        return perm

    def global_indices(self, k: int) -> np.ndarray:
        """Example indices of global batch ``k`` (eval: the last one may be short)."""
        epoch, step = divmod(int(k), self.steps_per_epoch)
        if self.train:
            return self.permutation(epoch)[step * self.global_batch:(step + 1) * self.global_batch]
        return np.arange(step * self.global_batch, min(self.source.num_examples, (step + 1) * self.global_batch))

    def __call__(self, batch_index: int, _: Any = None) -> dict[str, np.ndarray]:
        indices = self.global_indices(batch_index)
        local = indices[self.start:self.start + self.local_batch]
        n = len(local)
        rand = {}
        if self.augment != "none":
            rng = np.random.default_rng([self.aug_seed, int(batch_index)])
            rand = transforms.slice_random(transforms.draw_random(rng, self.global_batch, self.augment),
                                           self.start, self.start + n)
        h, w = self.pp["image_size"]
        if n:
            boxes = None
            if isinstance(self.source, sources.FolderSource) and transforms.crops(self.pp, train=self.train):
                # decoded knowing the crop: JPEGs at a reduced size when training (train.data.decode)
                region = functools.partial(transforms.crop_box, pp=self.pp, train=self.train, rand=rand)
                images, labels, ok, boxes = self.source.read(local, region, (h, w) if self.train else None)
            else:
                images, labels, ok = self.source.read(local)
            x = transforms.apply(images, self.pp, train=self.train, rand=rand, boxes=boxes)
            if not ok.all():
                x[~ok] = 0.0
        if n == self.local_batch:
            return {"image": x, "label": labels.astype(np.int32), "mask": ok.astype(np.float32)}
        image = np.zeros((self.local_batch, h, w, self.pp["channels"]), np.float32)
        label = np.zeros(self.local_batch, np.int32)
        mask = np.zeros(self.local_batch, np.float32)
        if n:
            image[:n], label[:n], mask[:n] = x, labels, ok
        return {"image": image, "label": label, "mask": mask}


WORKERS_PER_CORE = 4


def _workers(value) -> int:
    """``data.num_workers``: an int >= 0; more than :data:`WORKERS_PER_CORE` per CPU core of this
    machine is lowered to that, with a warning (500 workers on 2 cores once started for minutes
    without a word; a checkpoint's config from a larger machine still evaluates here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.num_workers={value!r}: must be an int >= 0 (0: read in this process)")
    cores = os.cpu_count() or 1
    if value > WORKERS_PER_CORE * cores:
        log.warning("data.num_workers=%d: this machine has %d CPU core(s); using %d worker processes", value, cores,
                    WORKERS_PER_CORE * cores)
        return WORKERS_PER_CORE * cores
    return value


def _fields(train: bool) -> dict[str, str]:
    """The config fields behind each entry of a pipeline's fingerprint (``load``'s ``fingerprint``)."""
    return {"name": "data.name", "split": "data.train_split" if train else "data.eval_split",
            "train": "train (pipeline kind)", "num_examples": "examples in data.name",
            "batch_size": "batch_size" if train else "eval_batch_size", "seed": "seed", "augment": "data.augment",
            "image_shape": "image shape (data.image_size, model_kwargs.in_channels)",
            "num_workers": "data.num_workers"}


def mismatch_message(saved: dict, current: dict) -> str:
    """One line: a resumed run's config differs from the one its saved iterator state was made with,
    each difference named by its config field, saved and current value, and what to do."""
    fields = _fields(bool(current.get("train", True)))
    keys = [*current, *(k for k in saved if k not in current)]
    diff = "; ".join(f"{fields.get(k, k)} {saved.get(k)!r} -> {current.get(k)!r}" for k in keys
                     if saved.get(k) != current.get(k))
    return (f"the checkpoint's input iterator is from a different pipeline (saved -> now): {diff}; nothing was "
            f"changed. Keep the saved values, or use another --workdir to start a new run with these")


class _CheckedIterDataset(grain.IterDataset):
    """Adds the pipeline's fingerprint to the iterator state; restoring a state from another pipeline
    (other dataset, batch size, seed, ...) raises instead of silently replaying different data."""

    def __init__(self, parent: grain.IterDataset, fingerprint: dict):
        super().__init__(parent)
        self._fingerprint = fingerprint

    def __iter__(self) -> grain.DatasetIterator:
        return _CheckedIterator(self._parent.__iter__(), self._fingerprint)

    def __str__(self) -> str:
        return f"_CheckedIterDataset({self._fingerprint})"


class _CheckedIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, fingerprint: dict):
        super().__init__(parent)
        self._fingerprint = fingerprint

    def __next__(self):
        return next(self._parent)

    def get_state(self) -> dict:
        return {_STATE_KEY: dict(self._fingerprint), "iterator": self._parent.get_state()}

    def set_state(self, state: dict) -> None:
        saved = state.get(_STATE_KEY) if isinstance(state, dict) else None
        if saved is None or "iterator" not in state:
            raise ValueError("not a train.data iterator state (expected keys 'pipeline' and 'iterator')")
        if saved != self._fingerprint:
            raise ValueError(mismatch_message(saved, self._fingerprint))
        self._parent.set_state(state["iterator"])

    def __str__(self) -> str:
        return "_CheckedIterator"


@dataclasses.dataclass
class Pipeline:
    """One split, batched and preprocessed. ``iter(pipeline)`` gives a fresh checkpointable iterator
    (``get_state()`` / ``set_state()``, JSON-able states; also ``grain.checkpoint.CheckpointSave``).

    Train iterators run ``num_epochs`` epochs (None: forever), ``steps_per_epoch`` batches each; eval
    iterators one pass of ``steps_per_epoch`` batches, the last padded."""

    name: str
    split: str
    train: bool
    num_examples: int               # in the whole split
    num_classes: int
    class_names: tuple[str, ...]
    batch_size: int                 # global
    local_batch_size: int           # this process's part: batch_size // process_count
    steps_per_epoch: int            # train: num_examples // batch_size; eval: ceil (last batch padded)
    num_epochs: int | None
    preprocessing: dict[str, Any]   # JSON-able; store with checkpoints; see transforms.preprocess_eval
    process_index: int
    process_count: int
    skipped: tuple[tuple[str, str], ...]   # (path, reason) of unreadable files left out (folder datasets)
    dataset: grain.IterDataset = dataclasses.field(repr=False)
    source: sources.Source = dataclasses.field(repr=False)

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w = self.preprocessing["image_size"]
        return h, w, self.preprocessing["channels"]

    @property
    def element_spec(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype of each array of a (process-local) batch."""
        b = self.local_batch_size
        return {"image": ((b, *self.image_shape), np.float32), "label": ((b,), np.int32), "mask": ((b,), np.float32)}


def _data_fields(data_cfg: Any) -> dict[str, Any]:
    """``data_cfg`` (a ``config.data`` ConfigDict, a dict with some of its keys, or None) over the
    defaults of ``configs/default.py``: every data field, each default stated once, there."""
    fields = default.get_config().data.to_dict()
    if data_cfg is not None:
        fields.update(data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg))
    return fields


def load(data_cfg: Any, *, split: str, train: bool, batch_size: int, image_shape: Sequence[int], seed: int = 0,
         num_epochs: int | None = None, process_index: int | None = None,
         process_count: int | None = None, crop_fraction: float = transforms.CROP_FRACTION,
         preprocessing: dict | None = None) -> Pipeline:
    """Build the pipeline for ``split`` of ``data_cfg.name``.

    Args:
      data_cfg: the ``config.data`` ConfigDict (or a dict with the same keys; missing keys take the
        defaults of ``configs/default.py``).
      split: the split name ('train', 'test', 'validation', TFDS slices such as 'train[:90%]', ...).
      train: shuffle each epoch, augment, drop the last partial batch; else one ordered, padded pass.
      batch_size: the GLOBAL batch; each process gets ``batch_size // process_count`` examples.
      image_shape: (H, W, C) fed to the model (see ``train.data.model_image_shape``).
      seed: shuffling and augmentation seed (same seed, same batches).
      num_epochs: train only: epochs to run (None: forever).
      process_index, process_count: this process's shard (default ``jax.process_index()`` / ``count()``).
      crop_fraction: evaluation's centre crop of the resized short side (ImageNet-style datasets;
        ``train.data.model_crop_fraction``: the model's, 0.875 or Inception v3's 299 / 342).
      preprocessing: fields of ``transforms.make_preprocessing`` to use instead of the dataset's
        (``mean``, ``std``, ``eval_resize``, ``crop_fraction``, ``interpolation``): published weights
        are evaluated with their own (``train.published``).
    """
    if process_index is None or process_count is None:
        import jax  # noqa: PLC0415

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f"batch_size={batch_size} must be a positive multiple of process_count={process_count}")
    h, w, c = (int(v) for v in image_shape)
    d = _data_fields(data_cfg)
    name = d["name"]
    for key, allowed in (("interpolation", transforms.INTERPOLATIONS), ("train_resize", transforms.TRAIN_RESIZE)):
        if d[key] not in allowed:
            raise ValueError(f"data.{key}={d[key]!r}: allowed values are {', '.join(map(repr, allowed))}")
    source = sources.open_source(
        name, split, image_shape=(h, w, c), data_dir=d["data_dir"], manual_dir=d["manual_dir"],
        train_split=d["train_split"], holdout_fraction=float(d["holdout_fraction"]), on_corrupt=d["on_corrupt"],
        empty_classes=d["empty_classes"],
        synthetic_num_examples=int(d["synthetic_num_examples"]),
        synthetic_num_classes=int(d["synthetic_num_classes"]), cache=bool(d["cache"]))
    augment = d["augment"]
    if augment == "auto":
        augment = {"mnist": "none", "cifar": "cifar", "imagenet": "imagenet"}.get(source.family, "none")
    fields = dict(mean=source.mean, std=source.std, eval_resize=source.eval_resize, crop_fraction=crop_fraction,
                  interpolation=d["interpolation"], train_resize=d["train_resize"])
    unknown = sorted(set(preprocessing or {}) - {"mean", "std", "eval_resize", "crop_fraction", "interpolation"})
    if unknown:
        raise ValueError(f"preprocessing: unknown field(s) {unknown}; allowed: mean, std, eval_resize, crop_fraction, "
                         f"interpolation")
    fields.update(preprocessing or {})
    pp = transforms.make_preprocessing(dataset=name, image_shape=(h, w, c), source_channels=source.channels,
                                       augment=augment, **fields)
    if transforms.resizes_with_opencv(pp, train=train):
        transforms.opencv()   # missing: one ImportError now, not in a worker at the first batch
    n = source.num_examples
    local_batch = batch_size // process_count
    if train:
        steps = n // batch_size
        if steps == 0:
            raise ValueError(f"{name}[{split}] has {n} examples, fewer than one batch of {batch_size}")
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
        ds = grain.MapDataset.range(steps).repeat(num_epochs)
    else:
        if n == 0:
            raise ValueError(f"{name}[{split}] is empty")
        steps = -(-n // batch_size)
        num_epochs = 1
        ds = grain.MapDataset.range(steps)
    loader = _BatchLoader(source, pp, train=train, global_batch=batch_size, local_batch=local_batch,
                          steps_per_epoch=steps, process_index=process_index, shuffle_seed=_sub_seed(seed, 1),
                          aug_seed=_sub_seed(seed, 2))
    ds = ds.map_with_index(loader)
    check_nonnegative_int("data.prefetch", d["prefetch"])   # batches read ahead (0: none)
    prefetch = int(d["prefetch"])
    num_workers = _workers(d["num_workers"])
    threads = min(max(prefetch, 0), os.cpu_count() or 1) if prefetch > 0 else 0
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(prefetch, 0)))
    if num_workers > 0:
        workers.prepare()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                               per_worker_buffer_size=max(prefetch, 1)),
                                  worker_init_fn=workers.end_with_parent)
    fingerprint = {"name": name, "split": split, "train": bool(train), "num_examples": n,
                   "batch_size": int(batch_size), "seed": int(seed) if train else 0, "augment": augment,
                   "image_shape": [h, w, c], "num_workers": num_workers}
    return Pipeline(name=name, split=split, train=bool(train), num_examples=n, num_classes=len(source.class_names),
                    class_names=tuple(source.class_names), batch_size=int(batch_size), local_batch_size=local_batch,
                    steps_per_epoch=steps, num_epochs=num_epochs, preprocessing=pp, process_index=process_index,
                    process_count=process_count, skipped=tuple(source.skipped),
                    dataset=_CheckedIterDataset(it_ds, fingerprint), source=source)


def model_image_shape(config: Any) -> tuple[int, int, int]:
    """(H, W, C) the model of ``config`` takes: the registry's default input size and channels, the
    native size of the model its ``model_kwargs`` build (``small_input=True``: 32; it once trained the
    CIFAR stem on CIFAR images resized to 224), ``config.model_kwargs.in_channels`` and
    ``config.data.image_size`` (checked against the model's smallest input)."""
    import zoo  # noqa: PLC0415

    h, w, c = zoo.model_info(config.model).input_shape
    kwargs = config.get("model_kwargs") or {}
    c = int(kwargs.get("in_channels", c))
    size = _data_fields(config.get("data"))["image_size"]
    spec = _input_spec(config.model, kwargs)
    if spec is not None and spec.native_size:
        h = w = spec.native_size
    if size is not None:   # only none means the model's default (0 once did too, silently)
        smallest = spec.min_size if spec is not None else 1
        if isinstance(size, bool) or not isinstance(size, int) or size < smallest:
            raise ValueError(f"data.image_size={size!r}: must be an integer >= {smallest} ({config.model}'s "
                             f"smallest input), or none for its default {h}")
        h = w = size
    return h, w, c


def _input_spec(name: str, kwargs):
    """The ``InputSpec`` of model ``name`` built with ``kwargs`` (ResNet's ``small_input`` changes it);
    None when they do not build it (the model's creation then says why)."""
    import zoo  # noqa: PLC0415

    kwargs = kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)
    try:
        return zoo.create(name, **kwargs).input_spec()
    except (TypeError, ValueError):
        return None


def model_crop_fraction(config: Any) -> float:
    """Evaluation's centre crop for the model of ``config`` (``ModelInfo.crop_fraction``: the model's
    input size over its resize size, 224 / 256 or Inception v3's 299 / 342), whatever ``data.image_size``."""
    import zoo  # noqa: PLC0415

    return zoo.model_info(config.model).crop_fraction


def from_config(config: Any, *, train: bool, num_epochs: int | None = None, process_index: int | None = None,
                process_count: int | None = None) -> Pipeline:
    """``load`` with everything taken from a full config: train -> (train_split, batch_size),
    eval -> (eval_split, eval_batch_size); image shape from ``model_image_shape``; ``config.seed``."""
    return load(config.data, split=config.data.train_split if train else config.data.eval_split, train=train,
                batch_size=config.batch_size if train else config.eval_batch_size,
                image_shape=model_image_shape(config), seed=config.seed, num_epochs=num_epochs if train else None,
                process_index=process_index, process_count=process_count, crop_fraction=model_crop_fraction(config))
