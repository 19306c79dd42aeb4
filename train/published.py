"""Published weights on a labelled set: does a download reproduce the catalogue's accuracy?

    python -m train.evaluate --pretrained resnet50 --config.data.name=imagenet2012
    python -m train.evaluate --pretrained resnet50:IMAGENET1K_V1 --config.data.name=folder:/data/imagenet/val

reports top-1 / top-5 beside the catalogue's acc@1 / acc@5. The images go through the weights' own
preprocessing (``train.data.transforms.for_weights``: resize / crop / interpolation / mean / std of the
entry), the eval step and the eval loop are the training stack's (``train.evaluation.compile_eval`` /
``run_eval``). The dataset's labels are mapped to the weights' classes: by name when every class of
the dataset is one of them (folders named ``tench``, ``goldfish``, ...; an exact name first, else case,
``_`` and ``-`` ignored when that leaves one class: ImageNet has ``Cardigan`` the dog and ``cardigan``
the sweater), else by order when the counts are equal and no class name is one of the weights'
(ImageNet's 1,000 wnid folders ``n01440764`` ... sorted, and TFDS ``imagenet2012``, are in
torchvision's class order); a dataset whose names match in part is refused, naming the others. The
mapping used is said and recorded in the report. The fields it reads (the dataset's ``data.*`` but
:data:`WEIGHTS_FIELDS`, and :data:`USED_FIELDS`: ``eval_batch_size``, ``parallelism``) can be set as
``--config.FIELD=VALUE``; any other is refused, naming it (the model, its input size, preprocessing
and precision are the weights'); ``data.eval_split`` defaults to ``validation``, and a folder without
a folder for that split is evaluated whole.
"""
from __future__ import annotations

import hashlib
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
from zoo.files import check_folder_to_write, safe_name, written_atomically

log = logging.getLogger("train")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def label_map(dataset_classes, weight_classes) -> tuple[np.ndarray, str]:
    """``(labels, how)``: ``labels[i]`` is the weights' class index of the dataset's class ``i``, ``how``
    'by name' or 'by order' (see the module docstring). ValueError naming the classes that match
    nothing, or more than one class, or the same class as another."""
    exact = {str(n): i for i, n in enumerate(weight_classes)}
    loose: dict[str, list[int]] = {}
    for i, n in enumerate(weight_classes):
        loose.setdefault(_key(n), []).append(i)

    def match(c) -> int | None:   # the exact name, else the one loose match; -1: several
        if str(c) in exact:
            return exact[str(c)]
        candidates = loose.get(_key(c), [])
        return candidates[0] if len(candidates) == 1 else -1 if candidates else None

    found = [match(c) for c in dataset_classes]
    if all(i is None for i in found) and len(dataset_classes) == len(weight_classes):
        return np.arange(len(weight_classes), dtype=np.int32), "by order"
    unknown = [c for c, i in zip(dataset_classes, found) if i is None]
    ambiguous = [f"{c!r} ({' or '.join(repr(weight_classes[j]) for j in loose[_key(c)])})"
                 for c, i in zip(dataset_classes, found) if i == -1]
    taken: dict[int, str] = {}
    twice = [f"{c!r} and {taken[i]!r}" for c, i in zip(dataset_classes, found)
             if i not in (None, -1) and taken.setdefault(i, c) != c]
    if not (unknown or ambiguous or twice):
        return np.asarray(found, np.int32), "by name"
    problems = "; ".join(x for x in (
        f"{len(unknown)} of the dataset's {len(dataset_classes)} classes are not classes of the weights (e.g. "
        f"{', '.join(map(repr, unknown[:5]))})" if unknown else "",
        f"ambiguous without their exact case: {', '.join(ambiguous[:5])}" if ambiguous else "",
        f"the same class of the weights: {', '.join(twice[:5])}" if twice else "") if x)
    order = (f"; by order only when no class is named like the weights' ({len(weight_classes)} classes)"
             if len(dataset_classes) == len(weight_classes) else f" or give all {len(weight_classes)} classes in order")
    raise ValueError(f"{problems}; name class folders by the weights' class names (zoo.weights.imagenet_classes())"
                     f"{order}")


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
    out = check_folder_to_write(output_dir, "--output_dir") if output_dir is not None else None
    batch = cfg.eval_batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"eval_batch_size={batch!r}: must be an int >= 1")
    split, fields, whole = _split_of(cfg)
    plan = parallel.make_plan(cfg.parallelism, -1)
    if batch % plan.num_devices:
        plan = parallel.make_plan(plan.parallelism, 1)
    pp = data.transforms.for_weights(entry)
    kw = dict(split=split, train=False, image_shape=(entry.crop_size, entry.crop_size, 3), seed=0,
              preprocessing={k: pp[k] for k in ("mean", "std", "eval_resize", "crop_fraction", "interpolation")})
    pipe = data.load(fields, batch_size=batch, **kw)
    fits = -(-pipe.num_examples // plan.num_devices) * plan.num_devices   # no padding beyond the set
    if batch > fits:
        log.info("eval_batch_size=%d: the set has %d images; batches of %d", batch, pipe.num_examples, fits)
        pipe = data.load(fields, batch_size=fits, **kw)
    labels, how = label_map(pipe.class_names, entry.class_names)
    log.info("the dataset's %d classes are mapped to the weights' %d %s", len(pipe.class_names),
             len(entry.class_names), how)
    model, variables = zoo.load_pretrained(name, entry.tag, cache_dir=cache_dir, axis_name=parallel.AXIS,
                                           conv_impl=zoo.convs.conv_impl_for(plan.devices[0].platform))
    eval_fn = evaluation.compile_eval(model, step.StepConfig(), plan)
    relabelled = _Relabelled(pipe, labels, len(entry.class_names))
    ev = evaluation.run_eval(eval_fn, parallel.replicate(variables, plan), relabelled, plan)
    per_class = {c: ev["per_class_top1"][int(i)] for c, i in zip(pipe.class_names, labels)}
    report = {"model": name, "weights": entry.tag, "dataset": pipe.name, "split": "all" if whole else pipe.split,
              "count": ev["count"],
              "top1": ev["top1"], "top5": ev["top5"], "loss": ev["loss"], "catalogue_acc1": entry.acc1,
              "catalogue_acc5": entry.acc5, "preprocessing": pp, "classes_mapped": how, "per_class_top1": per_class}
    if out is not None and jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        dataset = hashlib.sha256(cfg.data.name.encode()).hexdigest()[:8]   # two datasets never share a report
        path = out / f"pretrained_{name}_{entry.tag}_{safe_name(pipe.name, 40)}-{dataset}_{report['split']}.json"
        with written_atomically(path) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=1))
        report["report_json"] = str(path)
    return report



# what --pretrained reads of a config: the data.* fields but those the weights' entry (or training) decides
USED_FIELDS = ("eval_batch_size", "parallelism")
WEIGHTS_FIELDS = ("data.image_size", "data.interpolation", "data.augment", "data.train_resize")


def _refuse_unused(fields: list[tuple[str, str]]) -> None:
    """One ValueError line naming the ``--config.FIELD`` overrides that ``--pretrained`` would ignore."""
    unused = [name for name, _ in fields
              if name in WEIGHTS_FIELDS or not (name.startswith("data.") or name in USED_FIELDS)]
    if unused:
        given = ", ".join(f"--config.{n}" for n in dict.fromkeys(unused))
        raise ValueError(f"{given}: not used by --pretrained (the model, its input size, preprocessing and precision "
                         f"are the weights'); it uses --config.data.* (not {', '.join(WEIGHTS_FIELDS)}), "
                         f"--config.eval_batch_size and --config.parallelism")


def config_from_args(argv: list[str]):
    """The default config with ``data.eval_split='validation'`` and the ``--config.FIELD=VALUE`` of
    ``argv`` (``train.overrides``: typed by the field; an unknown field, one this command does not
    use or a bad value is one ValueError line); returns it with the rest of ``argv``."""
    from train import overrides  # noqa: PLC0415

    rest, fields = overrides.split(list(argv))
    cfg = default.get_config()
    cfg.data.eval_split = "validation"
    cfg = overrides.apply(cfg, fields)   # unknown fields and bad values first
    _refuse_unused(fields)
    return cfg, rest


def main(argv=None) -> int:
    from zoo import cli  # noqa: PLC0415

    ap = cli.parser("python -m train.evaluate --pretrained", __doc__, epilog=(
        "examples:\n  python -m train.evaluate --pretrained resnet50 --config.data.name=imagenet2012\n"
        "  python -m train.evaluate --pretrained resnet50:IMAGENET1K_V1 --config.data.name=folder:/data/imagenet/val\n\n"
        "config fields: --config.FIELD=VALUE for data.* (configs/default.py), eval_batch_size, parallelism; "
        "data.eval_split defaults to validation"))
    ap.add_argument("--pretrained", required=True, help="MODEL or MODEL:TAG (default tag: DEFAULT)")
    ap.add_argument("--cache_dir", default=None, help="weight cache (default $ZOO_CACHE or ~/.cache/cnn-zoo)")
    ap.add_argument("--output_dir", default=None, help="where to write the report JSON (default: not written)")
    try:
        cfg, rest = config_from_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        return cli.fail(e)
    a = ap.parse_args(rest)
    from zoo.weights import catalogue  # noqa: PLC0415

    try:   # the weights first, the error naming the flag (evaluate_pretrained's names weights=)
        catalogue.entry(*catalogue.parse_spec(a.pretrained))
    except ValueError as e:
        return cli.fail(f"--pretrained {a.pretrained}: {e}")
    logs.for_command()
    try:
        r = evaluate_pretrained(a.pretrained, cfg, cache_dir=a.cache_dir, output_dir=a.output_dir)
    except (ValueError, FileNotFoundError, OSError, ImportError) as e:
        return cli.fail(e)
    cat = (f"catalogue: acc@1 {r['catalogue_acc1']:.3f}%, acc@5 {r['catalogue_acc5']:.3f}%"
           if r["catalogue_acc1"] is not None else "no catalogue accuracy")
    print(f"{r['model']} {r['weights']} on {r['dataset']} [{r['split']}] ({r['count']} images): "
          f"top-1 {100 * r['top1']:.3f}%  top-5 {100 * r['top5']:.3f}%  ({cat})")
    if "report_json" in r:
        print(f"report: {r['report_json']}")
    return 0
