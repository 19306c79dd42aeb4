"""A network ready to run on images: model, variables, evaluation preprocessing and class names, from
published weights (``weights=TAG``), a torchvision weight file (``file=``) or one of our training
runs (``workdir=``). ``python -m zoo.predict`` and ``python -m zoo.export`` take it from the same three
command-line options (:func:`add_arguments`, :func:`from_args`).

    b = bundle.load("resnet50")                       # torchvision's DEFAULT weights
    b = bundle.load(workdir="runs/flowers")           # a run's best checkpoint, its own class names
    x = b.preprocess(list_of_uint8_images)            # (n, H, W, C) as the weights expect

Preprocessing is the weights' own (``train.data.transforms.for_weights``: resize / crop /
interpolation / mean / std of the catalogue entry) or the one stored with the run. A weight file
that is one of the catalogue's files (its sha256 starts with the entry's) takes that entry's
preprocessing and model options (GoogLeNet / Inception v3: ``transform_input=True``); any other file
its model's DEFAULT entry's preprocessing, and ``transform_input`` as given (default False, as
torchvision's ``load_state_dict`` into a fresh model). The description says which. Workdirs are read with ``train.load`` and preprocessing is
``train.data``'s, so this module (a command's helper) imports ``train`` inside its functions; nothing
that ``import zoo`` loads imports it.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo import registry
from zoo.compiling import use_compile_cache
from zoo.pretrained import load_pretrained


@dataclasses.dataclass(frozen=True)
class Bundle:
    model: Any                         # a zoo model: model.apply(variables, x, train=False) -> logits
    variables: dict
    preprocessing: dict                # train.data.transforms' dict: what preprocess_eval applies
    class_names: tuple[str, ...]
    description: str                   # "resnet50 IMAGENET1K_V2", "resnet18 from w.pth", "runs/x step 400"

    def preprocess(self, images) -> np.ndarray:
        """uint8 images (one, a batch, or a list of any sizes; gray / RGB / RGBA) -> float32 (n, H, W, C)."""
        from train.data.transforms import preprocess_eval  # noqa: PLC0415

        return preprocess_eval(images, self.preprocessing)


def _names(count: int, names: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(names) if names is not None and len(names) == count else tuple(f"class {i}" for i in range(count))


def load(name: str | None = None, *, weights: str | None = None, file=None, workdir=None, checkpoint: str = "best",
         conv_impl: str = "lax", cache_dir=None, progress: bool = True, transform_input: bool | None = None) -> Bundle:
    """The network ``name`` with ``weights`` (a tag; the default when none of the three is given),
    ``file`` or ``workdir`` (then ``name``, if given, must be the run's model). ``conv_impl``: the
    convolution implementation (``zoo.convs.conv_impl_for(platform)`` to run here, 'lax' to export).
    ``transform_input``: with ``file`` only, for GoogLeNet / Inception v3 (None: the published file's
    setting when the file is one, else False)."""
    from train.data import transforms  # noqa: PLC0415
    from zoo.weights import catalogue  # noqa: PLC0415

    given = [k for k, v in (("weights", weights), ("file", file), ("workdir", workdir)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one of weights, file or workdir, not {' and '.join(given)}")
    if transform_input is not None and (file is None or name is None
                                        or "transform_input" not in registry.model_info(name).options()):
        raise ValueError(f"transform_input={transform_input!r}: only with a weight file (file=) of googlenet or "
                         f"inception_v3 (published weights set it themselves)")
    if workdir is not None:
        return _from_workdir(name, workdir, checkpoint, conv_impl)
    if name is None:
        raise ValueError("model: a registered model name is needed with weights or a file (see python -m zoo)")
    if file is not None:
        return _from_file(name, file, conv_impl, transform_input)
    entry = catalogue.entry(name, weights or "DEFAULT")
    model, variables = load_pretrained(name, entry.tag, cache_dir=cache_dir, progress=progress, conv_impl=conv_impl)
    return Bundle(model, variables, transforms.for_weights(entry), _names(model.num_classes, entry.class_names),
                  f"{name} {entry.tag}")


def _from_file(name, file, conv_impl, transform_input) -> Bundle:
    from train.data import transforms  # noqa: PLC0415
    from zoo.weights import catalogue, download  # noqa: PLC0415

    found = catalogue.entries(name)
    published = None
    if found and Path(file).is_file():
        digest = download.sha256_of(Path(file))
        published = next((e for e in found if digest.startswith(e.sha256)), None)
    entry = published or next((e for e in found if e.default), None) or catalogue.WeightEntry(name, "FILE", "", "", 1000)
    overrides = {k: v for k, v in entry.model_overrides if k == "transform_input"} if published else {}
    if transform_input is not None:
        overrides["transform_input"] = transform_input
    model, variables = load_pretrained(name, file=file, conv_impl=conv_impl, **overrides)
    names = catalogue.imagenet_classes() if model.num_classes == 1000 else None
    how = (f"the {entry.tag} weights' file: their preprocessing" if published else
           f"preprocessing of {entry.tag}" if entry.tag != "FILE" else "preprocessing: resize 256 / crop 224 bilinear")
    if "transform_input" in registry.model_info(name).options():
        how += f", transform_input={getattr(model, 'transform_input', False)}"
    return Bundle(model, variables, transforms.for_weights(entry), _names(model.num_classes, names),
                  f"{name} from {file} ({how})")


def _from_workdir(name, workdir, checkpoint, conv_impl) -> Bundle:
    from train import evaluation  # noqa: PLC0415

    loaded = evaluation.load(workdir, checkpoint)
    run_model = loaded.meta["model"]
    if name is not None and name != run_model:
        raise ValueError(f"model={name!r} but {workdir} holds a {run_model}; leave the model out or name {run_model}")
    model = loaded.model.clone(conv_impl=conv_impl)
    names = _names(model.num_classes, loaded.meta.get("class_names"))
    ema = evaluation.kept_ema(loaded.meta)   # used, as evaluate does
    return Bundle(model, loaded.variables, loaded.meta["preprocessing"], names,
                  f"{workdir} ({run_model}, step {loaded.step}{', parameter EMA' if ema else ''})")


def add_arguments(p: argparse.ArgumentParser, *, model_required: bool = False) -> None:
    """``--model``, and one of ``--weights TAG`` | ``--file PATH`` | ``--workdir RUN`` [``--checkpoint``]."""
    p.add_argument("--model", required=model_required, help="a registered model (python -m zoo lists them)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", help="a weight tag of the model (default: DEFAULT, torchvision's default)")
    src.add_argument("--file", help="a torchvision weight file (.pth or .safetensors): a catalogue file (by its "
                     "sha256) takes its own preprocessing, others the model's DEFAULT weights'")
    src.add_argument("--workdir", help="a training run of this project (its best checkpoint)")
    p.add_argument("--checkpoint", default=None, help="with --workdir: 'best' (default), 'latest' or a step")
    p.add_argument("--cache_dir", default=None, help="weight cache (default $ZOO_CACHE or ~/.cache/cnn-zoo)")
    p.add_argument("--transform_input", action="store_true", default=None,
                   help="with --file of googlenet / inception_v3: the network rescales ImageNet-normalised input "
                        "as torchvision's published weights expect (automatic for torchvision's own files)")


def from_args(args: argparse.Namespace, *, conv_impl: str = "lax") -> Bundle:
    use_compile_cache()   # the commands that build a bundle (predict, export) compile with the persistent cache
    if args.checkpoint is not None and args.workdir is None:
        raise ValueError(f"--checkpoint={args.checkpoint}: only a --workdir has checkpoints")
    if args.model is not None:
        registry.model_info(args.model)  # an unknown name: the closest names, before anything loads
    return load(args.model, weights=args.weights, file=args.file, workdir=args.workdir,
                checkpoint=args.checkpoint or "best", conv_impl=conv_impl, cache_dir=args.cache_dir,
                transform_input=getattr(args, "transform_input", None))
