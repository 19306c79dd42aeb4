"""Transfer learning: start a training run from pretrained weights (``config.transfer.init_from``).

The notes' advice: few people train a ConvNet from scratch; start from a network pretrained on
ImageNet and either fine-tune it or use it as a fixed feature extractor. The config fields:

* ``transfer.init_from``: published weights by name, ``'pretrained:MODEL'`` or
  ``'pretrained:MODEL:TAG'`` (the catalogue of ``zoo.weights``: downloaded, checked and converted
  once, then read from the cache; MODEL must be ``config.model``), a weight file (torchvision names
  and layouts: ``.safetensors`` or ``.pth`` / ``.pt``, read without PyTorch; see ``zoo.convert``), or
  a workdir holding our checkpoints (its best checkpoint, EMA parameters when the run kept them, as
  ``train.restore``).
* ``transfer.freeze``: ``'none'`` | ``'backbone'`` (train the classifier only: a fixed feature
  extractor) | a regex over ``/``-joined parameter paths (matching leaves are frozen). Frozen
  parameters get ``optax.set_to_zero`` (``train/optim.py``) and the BatchNorm statistics of frozen
  parts stay as loaded (``StepConfig.stats_trainable``).
* ``transfer.backbone_lr_mult``: the backbone's learning rate is this times the head's.

``fit`` calls :func:`init_state` on the freshly initialised state of a new run (never on resume: a
resumed run continues from its own checkpoint). Every parameter and BatchNorm statistic is copied
from the source; the classifier (``ModelInfo.head``) is kept freshly initialised when its shape
differs (another class count; logged), and so are auxiliary classifiers the source lacks; the
source's auxiliary classifiers are left out of a model built without them (logged). Any other difference (missing, extra or differently shaped
leaves) is an error listing them, raised before anything is changed.

Giving trained weights back to torchvision::

    python -m train.transfer export runs/flowers flowers_resnet18.safetensors [--checkpoint best]
    # in PyTorch: m = torchvision.models.resnet18(num_classes=K)
    #             m.load_state_dict(safetensors.torch.load_file("flowers_resnet18.safetensors"))
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import jax
import numpy as np

from train import checkpoint, evaluation, setup
from zoo import convert
from zoo.convert.files import check_safetensors_name

log = logging.getLogger("train")


def check_resume(config, stored: dict | None, workdir) -> None:
    """A resumed run keeps its own transfer settings: ``transfer.freeze`` / ``backbone_lr_mult`` other
    than the run's are refused (the optimizer's partition differs), naming the field;
    ``transfer.init_from`` other than the run's is said to be ignored (resuming continues from the
    run's own checkpoint). ``stored``: the config of the workdir's latest checkpoint."""
    if not stored:
        return
    was = stored.get("transfer") or {}
    now = config.get("transfer", None)
    if now is None:
        return
    for field in ("freeze", "backbone_lr_mult"):
        if field in was and now[field] != was[field]:
            raise checkpoint.WorkdirMismatchError(
                f"transfer.{field}={now[field]!r}: {workdir} was trained with {was[field]!r}; nothing was changed: "
                f"resume with the run's value, or start another --workdir (transfer.init_from={str(workdir)!r} "
                f"starts from this run's weights)")
    if now.init_from and now.init_from != was.get("init_from"):
        log.warning("transfer.init_from=%r: ignored, %s resumes from its own checkpoint (it started from %r)",
                    now.init_from, workdir, was.get("init_from"))


def check_source(init_from: str, model_name: str):
    """Refuse an ``init_from`` that names no catalogue entry or no existing path, before anything
    compiles (``train.fit`` calls it for a fresh run; a resumed run never reads it). Returns the
    catalogue entry of ``'pretrained:...'``, None for a path."""
    entry = setup.published_entry(init_from, model_name)
    if entry is not None:
        return entry
    path = Path(str(init_from)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"transfer.init_from={init_from!r}: no such weight file or workdir")
    stored = checkpoint.checkpoint_dir(path)
    if path.is_dir() and not (stored.is_dir() and any(p.name.isdigit() for p in stored.iterdir())):
        raise FileNotFoundError(f"transfer.init_from={init_from!r}: a folder without checkpoints; give a workdir of a "
                                f"run of this project, a weight file or 'pretrained:MODEL'")
    suffixes = convert.SAFETENSORS_SUFFIXES + convert.TORCH_SUFFIXES
    if path.is_file() and path.suffix.lower() not in suffixes:
        raise ValueError(f"transfer.init_from={init_from!r}: unknown weight file type {path.suffix!r}; allowed: "
                         f"{', '.join(suffixes)}")
    return None


def load_source(init_from: str, model_name: str, model) -> tuple[dict, str]:
    """``(variables, description)`` of ``init_from`` for ``model`` (``model_name``'s zoo model).

    Published weights and weight files are converted with ``zoo.convert`` for the model they were
    made for (their own class count: :func:`init_state` keeps the fresh classifier where it
    differs); a workdir is read once with ``train.load``."""
    entry = check_source(init_from, model_name)
    if entry is not None:
        from zoo.pretrained import published_variables  # noqa: PLC0415

        return published_variables(entry), f"published weights {model_name} {entry.tag}"  # init_state: THE head rule
    path = Path(str(init_from)).expanduser()
    try:
        if path.is_dir():
            _, variables, meta, s = evaluation.load(path)
            source_model = meta.get("model")
            if source_model != model_name:
                log.warning("transfer.init_from: %s holds a %s, training a %s: it loads only if every leaf "
                            "but the classifier has the same path and shape", path, source_model, model_name)
            ema = "EMA " if evaluation.kept_ema(meta) else ""
            return dict(variables), f"checkpoint {s} ({ema}weights) of {source_model} in {path}"
        sd = convert.load_state_dict(path)
        source = convert.model_for_state_dict(model_name, sd, model)  # the file's class count
        return convert.from_torchvision(model_name, sd, model=source), f"weight file {path}"
    except (ValueError, OSError) as e:   # a file's mismatch or damage, a workdir without checkpoints
        if not str(e).startswith("transfer.init_from"):
            e.args = (f"transfer.init_from={str(init_from)!r}: {e}",)   # the field named, the type kept
        raise


def init_state(state, config, model, info):
    """The fresh ``state`` (``train.step.TrainState``) with its parameters and BatchNorm statistics
    loaded from ``config.transfer.init_from``; the EMA (if any) restarts from them."""
    loaded, description = load_source(config.transfer.init_from, info.name, model)
    fresh = {"params": state.params, "batch_stats": state.batch_stats}
    fresh = {k: v for k, v in fresh.items() if v}
    loaded = {k: v for k, v in loaded.items() if k in ("params", "batch_stats") and v}
    variables, kept, left_out = convert.merge_head(jax.device_get(fresh), loaded, info.head,
                                                   what="transfer.init_from: the source does not match the model")
    n = sum(int(np.size(v)) for v in jax.tree.leaves(variables.get("params", {})))
    log.info("transfer: %s initialised from %s (%s parameters; freshly initialised: %s; left out: %s)", info.name,
             description, f"{n:,}", ", ".join(kept) or "none", ", ".join(left_out) or "none")
    params = variables["params"]
    new = state.replace(params=params, batch_stats=variables.get("batch_stats", state.batch_stats))
    if state.ema_params is not None:
        new = new.replace(ema_params=jax.tree.map(np.copy, params),
                          ema_batch_stats=jax.tree.map(np.copy, new.batch_stats))
    return new


def export_torchvision(workdir, path, *, checkpoint_step: str | int = "best", overwrite: bool = False) -> dict:
    """Write a workdir's trained weights as a torchvision state_dict (safetensors); returns it. An
    existing file is kept (FileExistsError) unless ``overwrite=True``."""
    model, variables, meta, _ = evaluation.load(workdir, checkpoint_step)
    return convert.save_torchvision(meta["model"], variables, path, model=model, overwrite=overwrite)


def main(argv=None) -> int:
    from train import overrides  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    p = cli.parser("python -m train.transfer", "Export a run's trained weights for torchvision.",
                   epilog="example:\n  python -m train.transfer export runs/flowers flowers_resnet18.safetensors\n\n"
                          "training from pretrained weights: --config.transfer.init_from (configs/default.py)")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="workdir -> torchvision state_dict as .safetensors")
    e.add_argument("workdir")
    e.add_argument("dst")
    e.add_argument("--checkpoint", default="best", help="'best', 'latest' or a step number")
    e.add_argument("--overwrite", action="store_true", help="replace an existing dst")
    args = p.parse_args(argv)
    try:
        overrides.check_workdir(args.workdir, "workdir")
        check_safetensors_name(args.dst, "dst")   # named as typed, before the workdir is read
        cli.keep_existing(args.dst, "dst", args.overwrite)
        sd = export_torchvision(args.workdir, args.dst, checkpoint_step=args.checkpoint, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        return cli.fail(err)
    print(f"{args.dst}: {len(sd)} tensors (torchvision names and layouts)")
    return 0


if __name__ == "__main__":
    from zoo import cli

    sys.exit(cli.run(main))
