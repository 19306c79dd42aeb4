"""Published weights on a labelled set: does a download reproduce the catalogue's accuracy?

    python -m train.evaluate --pretrained resnet50 --config.data.name=imagenet2012
    python -m train.evaluate --pretrained resnet50:IMAGENET1K_V1 --config.data.name=folder:/data/imagenet/val

reports top-1 / top-5 beside the catalogue's acc@1 / acc@5. The images go through the weights' own
preprocessing (``train.data.transforms.for_weights``: resize / crop / interpolation / mean / std of the
entry), the eval step and the eval loop are the training stack's (``train.evaluation.compile_eval`` /
``run_eval``). The dataset's labels are mapped to the weights' classes: by name when every class of
the dataset is one of them (folders named ``tench``, ``goldfish``, ...; case, ``_`` and ``-`` ignored),
else by order when the counts are equal (ImageNet's 1,000 wnid folders ``n01440764`` ... sorted, and
TFDS ``imagenet2012``, are in torchvision's class order). Any ``config`` field can be set as
``--config.FIELD=VALUE``; ``data.eval_split`` defaults to ``validation``, and a folder without a
folder for that split is evaluated whole.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import jax
import numpy as np

import zoo
from configs import default
from train import data, evaluation, logs, parallel, step

log = logging.getLogger("train")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def label_map(dataset_classes, weight_classes) -> np.ndarray:
    """``labels[i]``: the weights' class index of the dataset's class ``i`` (by name, else by order
    when the counts agree); ValueError naming classes that match nothing."""
    index = {_key(n): i for i, n in enumerate(weight_classes)}
    found = [index.get(_key(c)) for c in dataset_classes]
    if all(i is not None for i in found):
        return np.asarray(found, np.int32)
    if len(dataset_classes) == len(weight_classes):
        return np.arange(len(weight_classes), dtype=np.int32)
    unknown = [c for c, i in zip(dataset_classes, found) if i is None]
    raise ValueError(f"{len(unknown)} of the dataset's {len(dataset_classes)} classes are not classes of the "
                     f"weights (e.g. {', '.join(map(repr, unknown[:5]))}); name class folders by the weights' class "
                     f"names (zoo.weights.imagenet_classes()) or give all {len(weight_classes)} classes in order")


class _Relabelled:
    """A pipeline whose labels are the weights' class indices (for ``evaluation.run_eval``)."""

    def __init__(self, pipe: data.Pipeline, labels: np.ndarray, num_classes: int):
        self.pipe, self.labels, self.num_classes = pipe, labels, num_classes

    def __iter__(self):
        for batch in self.pipe:
            yield {**batch, "label": self.labels[batch["label"]]}


def _split_of(cfg) -> tuple[str, dict, bool]:
    """(split, data fields, whole): a folder without a folder for the eval split is evaluated whole."""
    d = cfg.data
    if d.name.startswith("folder:"):
        root = Path(d.name[len("folder:"):]).expanduser()
        if not (root / d.eval_split).is_dir() and not (root / d.train_split).is_dir():
            return d.train_split, {**d.to_dict(), "holdout_fraction": 0.0}, True
    return d.eval_split, d.to_dict(), False


def evaluate_pretrained(spec: str, config=None, *, cache_dir=None, output_dir=None) -> dict:
    """Top-1 / top-5 of published weights ``spec`` (``MODEL[:TAG]``) on ``config.data``'s eval split,
    beside the catalogue's figures."""
    from zoo.weights import catalogue  # noqa: PLC0415

    cfg = config if config is not None else default.get_config()
    name, tag = catalogue.parse_spec(spec)
    entry = catalogue.entry(name, tag)
    if not entry.class_names:
        raise ValueError(f"{name} {entry.tag} has no classifier to evaluate (features only)")
    split, fields, whole = _split_of(cfg)
    plan = parallel.make_plan(cfg.parallelism, -1)
    if cfg.eval_batch_size % plan.num_devices:
        plan = parallel.make_plan(plan.parallelism, 1)
    pp = data.transforms.for_weights(entry)
    pipe = data.load(fields, split=split, train=False, batch_size=int(cfg.eval_batch_size),
                     image_shape=(entry.crop_size, entry.crop_size, 3), seed=0,
                     preprocessing={k: pp[k] for k in ("mean", "std", "eval_resize", "crop_fraction", "interpolation")})
    labels = label_map(pipe.class_names, entry.class_names)
    model, variables = zoo.load_pretrained(name, entry.tag, cache_dir=cache_dir, axis_name=parallel.AXIS,
                                           conv_impl=zoo.convs.conv_impl_for(plan.devices[0].platform))
    eval_fn = evaluation.compile_eval(model, step.StepConfig(), plan)
    relabelled = _Relabelled(pipe, labels, len(entry.class_names))
    ev = evaluation.run_eval(eval_fn, parallel.replicate(variables, plan), relabelled, plan)
    per_class = {c: ev["per_class_top1"][int(i)] for c, i in zip(pipe.class_names, labels)}
    report = {"model": name, "weights": entry.tag, "dataset": pipe.name, "split": "all" if whole else pipe.split,
              "count": ev["count"],
              "top1": ev["top1"], "top5": ev["top5"], "loss": ev["loss"], "catalogue_acc1": entry.acc1,
              "catalogue_acc5": entry.acc5, "preprocessing": pp, "per_class_top1": per_class}
    if output_dir is not None and jax.process_index() == 0:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"pretrained_{name}_{entry.tag}_{report['split']}.json"
        path.write_text(json.dumps(report, indent=1))
        report["report_json"] = str(path)
    return report


def config_from_args(argv: list[str]):
    """The default config with ``data.eval_split='validation'`` and the ``--config.FIELD=VALUE`` of
    ``argv`` (``train.overrides``: typed by the field; an unknown field or a bad value is one
    ValueError line); returns it with the rest of ``argv``."""
    from train import overrides  # noqa: PLC0415

    rest, fields = overrides.split(list(argv))
    cfg = default.get_config()
    cfg.data.eval_split = "validation"
    return overrides.apply(cfg, fields), rest


def main(argv=None) -> int:
    from zoo import cli  # noqa: PLC0415

    ap = cli.parser("python -m train.evaluate --pretrained", __doc__, epilog=(
        "examples:\n  python -m train.evaluate --pretrained resnet50 --config.data.name=imagenet2012\n"
        "  python -m train.evaluate --pretrained resnet50:IMAGENET1K_V1 --config.data.name=folder:/data/imagenet/val\n\n"
        "any config field: --config.FIELD=VALUE (configs/default.py); data.eval_split defaults to validation"))
    ap.add_argument("--pretrained", required=True, help="MODEL or MODEL:TAG (default tag: DEFAULT)")
    ap.add_argument("--cache_dir", default=None, help="weight cache (default $ZOO_CACHE or ~/.cache/cnn-zoo)")
    ap.add_argument("--output_dir", default=None, help="where to write the report JSON (default: not written)")
    try:
        cfg, rest = config_from_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        return cli.fail(e)
    a = ap.parse_args(rest)
    logs.for_command()
    try:
        r = evaluate_pretrained(a.pretrained, cfg, cache_dir=a.cache_dir, output_dir=a.output_dir)
    except (ValueError, FileNotFoundError, OSError, ImportError) as e:
        return cli.fail(e)
    cat = (f"catalogue: acc@1 {r['catalogue_acc1']:.3f}%, acc@5 {r['catalogue_acc5']:.3f}%"
           if r["catalogue_acc1"] is not None else "no catalogue accuracy")
    print(f"{r['model']} {r['weights']} on {r['dataset']} [{r['split']}] ({r['count']} images): "
          f"top-1 {100 * r['top1']:.3f}%  top-5 {100 * r['top5']:.3f}%  ({cat})")
    return 0
