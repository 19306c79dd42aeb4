"""Input pipelines: real images, fed fast and deterministically, as process-local numpy batches.

    from train import data
    pipe = data.load(config.data, split="train", train=True, batch_size=128, image_shape=(28, 28, 1), seed=0)
    # or: pipe = data.from_config(config, train=True)
    it = iter(pipe)                  # grain DatasetIterator: next(it), it.get_state(), it.set_state(s)
    batch = next(it)                 # {'image': f32 (B, H, W, C), 'label': i32 (B,), 'mask': f32 (B,)}
    pipe.steps_per_epoch, pipe.num_classes, pipe.class_names, pipe.preprocessing
    x = data.preprocess_eval(uint8_image, pipe.preprocessing)   # one user image -> (1, H, W, C)

``B`` is the process-local part of the global batch (``batch_size // process_count``); ``train.parallel``
places it on devices. Datasets (``config.data.name``): ``'mnist5k'`` (offline, default), ``'synthetic'``,
``'folder:PATH'``, ``'idx:PATH'`` (MNIST-format IDX files), or any TFDS image classification dataset
prepared as ArrayRecord (read without tensorflow). See ``sources.py`` (datasets), ``idx.py`` (IDX files),
``transforms.py`` (preprocessing), ``pipeline.py`` (grain, sharding, determinism).
"""
from train.data.pipeline import Pipeline, from_config, load, model_crop_fraction, model_image_shape
from train.data.sources import KNOWN_DATASETS, Source, mnist5k_split_indices, open_source
from train.data.transforms import AUGMENTATIONS, make_preprocessing, preprocess_eval


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> None:
    """Download and prepare TFDS dataset ``name`` as ArrayRecord (needs tensorflow and, except for
    manual datasets such as imagenet2012 whose files are in ``manual_dir``, network access).
    Equivalent to ``tfds build NAME --data_dir=... --file_format=array_record [--manual_dir=...]``."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


__all__ = ["load", "from_config", "model_image_shape", "model_crop_fraction", "Pipeline", "preprocess_eval", "make_preprocessing",
           "open_source", "Source", "prepare", "mnist5k_split_indices", "KNOWN_DATASETS", "AUGMENTATIONS"]
