"""The weight catalogue: torchvision's published ImageNet weights (``torchvision_weights.json``, package
data, read on first use) plus the entries a user registers for this process.

    entries("resnet50")              # (WeightEntry IMAGENET1K_V1, WeightEntry IMAGENET1K_V2), default marked
    entry("resnet50", "DEFAULT")     # IMAGENET1K_V2: torchvision's default
    register("resnet18", "FLOWERS", url="https://models.example.com/flowers.safetensors", sha256="9f2c...",
             categories=["daisy", "rose", "tulip"])

``DEFAULT`` is torchvision's ``Weights.DEFAULT`` for that model, which is always its highest
``IMAGENET1K_V<n>`` tag (V2 for resnet50/101/152, resnext50_32x4d, resnext101_32x8d, wide_resnet50_2/
101_2, mobilenet_v2, mobilenet_v3_large, efficientnet_b1; V1 elsewhere; never vgg16's
``IMAGENET1K_FEATURES``: checked against torchvision 0.28's ``get_model_weights(name).DEFAULT`` for all
49 models of the catalogue). A model with no published weights has as DEFAULT the first tag a user
registered for it.

Published-weight facts that the JSON does not carry, from torchvision's weight enums:

* evaluation mean / std: ImageNet's for every entry, except vgg16 ``IMAGENET1K_FEATURES`` (the
  original Caffe standardisation: mean (0.48235, 0.45882, 0.40784), std 1/255) and efficientnet_v2_l
  (mean = std = 0.5, the original TensorFlow weights' range);
* googlenet and inception_v3 are built with ``transform_input=True`` when their torchvision weights
  are loaded, and with torchvision's default ``aux_logits`` for them: googlenet without its auxiliary
  classifiers (the file's ``aux1`` / ``aux2`` are left out: 6,624,904 parameters), inception_v3 with
  ``AuxLogits`` (27,161,264) (:data:`PUBLISHED_OVERRIDES`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import urllib.parse
from importlib import resources
from typing import Any, Sequence

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic")
TORCHVISION_BASE = "https://download.pytorch.org/models/"
PUBLISHED_OVERRIDES = {"googlenet": {"transform_input": True, "aux_logits": False},
                       "inception_v3": {"transform_input": True, "aux_logits": True}}
_OTHER_STATS = {("vgg16", "IMAGENET1K_FEATURES"): ((0.48235, 0.45882, 0.40784), (1 / 255,) * 3),
                ("efficientnet_v2_l", "IMAGENET1K_V1"): ((0.5,) * 3, (0.5,) * 3)}
_VERSIONED = re.compile(r"^IMAGENET1K_V(\d+)$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclasses.dataclass(frozen=True)
class WeightEntry:
    """One set of weights of one model. ``sha256``: the full hash (64 hex digits) or a prefix of it
    (torchvision's file names carry the first 8-10); ``categories``: class count (0: no usable
    classifier); ``class_names``: the classes, when known (given with a user entry; else ImageNet's
    for 1000 classes); evaluation preprocessing: resize the short side to ``resize_size`` with
    ``interpolation``, centre-crop ``crop_size``, normalise with ``mean`` / ``std``."""

    model: str
    tag: str
    url: str
    sha256: str
    categories: int
    crop_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    acc1: float | None = None
    acc5: float | None = None
    num_params: int | None = None
    gflops: float | None = None
    file_mb: float | None = None
    min_size: tuple[int, int] | None = None
    published: bool = True                     # torchvision's (False: register_weights)
    default: bool = False                      # what "DEFAULT" resolves to for this model
    model_overrides: tuple[tuple[str, Any], ...] = ()   # zoo.create options these weights need
    names: tuple[str, ...] | None = None       # class names given with a user entry

    @property
    def filename(self) -> str:
        """The file's name: the last part of the URL's path (a query or fragment is not part of it, as
        for ``torch.hub``)."""
        return url_filename(self.url)

    @property
    def full_hash(self) -> bool:
        return len(self.sha256) == 64

    @property
    def class_names(self) -> tuple[str, ...] | None:
        if self.names is not None:
            return self.names
        return imagenet_classes() if self.categories == 1000 else None

    def summary(self) -> str:
        """``IMAGENET1K_V2 (default): acc@1 80.858, acc@5 95.434, resize 232 / crop 224 bilinear``."""
        acc = (f"acc@1 {self.acc1:.3f}, acc@5 {self.acc5:.3f}" if _number(self.acc1) and _number(self.acc5)
               else "no ImageNet accuracy")
        return (f"{self.tag}{' (default)' if self.default else ''}: {acc}, resize {self.resize_size} / crop "
                f"{self.crop_size} {self.interpolation}")


SAFETENSORS_SUFFIXES = (".safetensors",)   # the weight files zoo.convert.load_state_dict reads
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def url_filename(url: str) -> str:
    """``https://host/a/b.pth?download=1#x`` -> ``b.pth``."""
    return urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and v == v  # not None, not NaN


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in torchvision's order (index = class id)."""
    text = resources.files("zoo.weights").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"zoo/weights/imagenet_classes.txt holds {len(names)} names, 1000 expected")
    return names


def _published_entry(raw: dict, default_tag: str) -> WeightEntry:
    mean, std = _OTHER_STATS.get((raw["model"], raw["weights"]), (IMAGENET_MEAN, IMAGENET_STD))
    return WeightEntry(
        model=raw["model"], tag=raw["weights"], url=raw["url"], sha256=raw["sha256_prefix"].lower(),
        categories=int(raw["categories"]), crop_size=int(raw["crop_size"]), resize_size=int(raw["resize_size"]),
        interpolation=raw["interpolation"], mean=mean, std=std, acc1=raw.get("acc1"), acc5=raw.get("acc5"),
        num_params=raw.get("num_params"), gflops=raw.get("gflops"), file_mb=raw.get("file_mb"),
        min_size=tuple(raw["min_size"]) if raw.get("min_size") else None, published=True,
        default=raw["weights"] == default_tag,
        model_overrides=tuple(sorted(PUBLISHED_OVERRIDES.get(raw["model"], {}).items())))


def default_tag(tags: Sequence[str]) -> str | None:
    """torchvision's DEFAULT among a model's published tags: the highest ``IMAGENET1K_V<n>``."""
    versioned = [(int(m.group(1)), t) for t in tags if (m := _VERSIONED.match(t))]
    return max(versioned)[1] if versioned else None


@functools.lru_cache(maxsize=1)
def published() -> dict[str, tuple[WeightEntry, ...]]:
    """``{model: entries}`` of torchvision's published weights (the package's JSON, read once)."""
    raw = json.loads(resources.files("zoo.weights").joinpath("torchvision_weights.json").read_text(encoding="utf-8"))
    by_model: dict[str, list[dict]] = {}
    for r in raw:
        by_model.setdefault(r["model"], []).append(r)
    return {m: tuple(_published_entry(r, default_tag([x["weights"] for x in rs])) for r in rs)
            for m, rs in by_model.items()}


_USER: dict[str, dict[str, WeightEntry]] = {}   # model -> tag -> entry, in registration order

USER_META = ("categories", "crop_size", "resize_size", "interpolation", "mean", "std", "acc1", "acc5", "num_params",
             "gflops", "file_mb", "min_size", "model_overrides")


def entries(model: str) -> tuple[WeightEntry, ...]:
    """Every weight entry of ``model``: published ones, then the user's (this process), DEFAULT marked."""
    pub = published().get(model, ())
    user = tuple(_USER.get(model, {}).values())
    if user and not any(e.default for e in pub):  # no published default: the first user tag
        user = (dataclasses.replace(user[0], default=True),) + user[1:]
    return pub + user


def models_with_weights() -> list[str]:
    """Models with at least one catalogue entry, sorted."""
    return sorted(set(published()) | {m for m, tags in _USER.items() if tags})


def entry(model: str, tag: str = "DEFAULT") -> WeightEntry:
    """The entry ``tag`` of ``model`` (``"DEFAULT"``: torchvision's default); ValueError naming the
    model's tags when there is no such entry."""
    found = entries(model)
    if not found:
        raise ValueError(f"no weights are catalogued for {model!r}; models with weights: "
                         f"{', '.join(models_with_weights())} (or load a file: file=PATH, or add an entry: "
                         f"zoo.register_weights)")
    bare = _unqualified(model, tag)
    for e in found:
        if e.tag == bare or (bare == "DEFAULT" and e.default):
            return e
    raise ValueError(f"weights={tag!r}: {model} has {', '.join(e.tag for e in found)} or 'DEFAULT'")


def _unqualified(model: str, tag):
    """torchvision's qualified names, ``'ResNet50_Weights.IMAGENET1K_V2'`` (``WeightsEnum.verify``):
    the tag after the model's enum name (compared without case and underscores); another model's
    enum is refused."""
    enum, dot, rest = tag.partition(".") if isinstance(tag, str) else ("", "", "")
    if not dot or not enum.endswith("_Weights"):
        return tag
    if enum[:-len("_Weights")].replace("_", "").lower() != model.replace("_", "").lower():
        raise ValueError(f"weights={tag!r}: {enum} are another model's weights; {model} has "
                         f"{', '.join(e.tag for e in entries(model))} or 'DEFAULT'")
    return rest


def parse_spec(spec: str) -> tuple[str, str]:
    """``'resnet50'`` -> ``('resnet50', 'DEFAULT')``; ``'resnet50:IMAGENET1K_V1'`` -> its tag."""
    name, _, tag = str(spec).partition(":")
    if not name or ":" in tag:
        raise ValueError(f"{spec!r}: MODEL or MODEL:TAG (e.g. resnet50:IMAGENET1K_V2)")
    return name, tag or "DEFAULT"


def register(model: str, tag: str, *, url: str, sha256: str, **meta: Any) -> WeightEntry:
    """Add (or replace) a user entry for this process; see ``zoo.register_weights``."""
    unknown = sorted(set(meta) - set(USER_META))
    if unknown:
        raise ValueError(f"register_weights: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(USER_META)}")
    if not isinstance(tag, str) or not tag or tag == "DEFAULT":
        raise ValueError(f"register_weights: tag={tag!r}: a non-empty name other than 'DEFAULT'")
    if any(e.tag == tag for e in published().get(model, ())):
        raise ValueError(f"register_weights: {model} {tag} is torchvision's published entry; choose another tag")
    if not isinstance(url, str) or not re.match(r"^(https?|file)://", url) or not url_filename(url):
        raise ValueError(f"register_weights: url={url!r}: an http(s):// or file:// URL of the file")
    suffixes = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES
    if not url_filename(url).lower().endswith(suffixes):
        raise ValueError(f"register_weights: url={url!r}: its file name {url_filename(url)!r} must end in one of "
                         f"{', '.join(suffixes)} (the file type is read from it)")
    digest = str(sha256).lower()
    if not _HEX.match(digest):
        raise ValueError(f"register_weights: sha256={sha256!r}: the file's sha256 in hex (64 digits, or a prefix of "
                         f"at least 8)")
    fields: dict[str, Any] = {k: v for k, v in meta.items() if k not in ("categories", "model_overrides")}
    categories = meta.get("categories", 1000)
    names = None
    if isinstance(categories, bool) or (isinstance(categories, int) and categories < 0) or \
            isinstance(categories, (str, float)):
        raise ValueError(f"register_weights: categories={categories!r}: the class count (0: no usable classifier) or "
                         f"the class names")
    if not isinstance(categories, int):
        names = tuple(str(c) for c in categories)
        categories = len(names)
    for k in ("crop_size", "resize_size"):
        if k in fields and (not isinstance(fields[k], int) or isinstance(fields[k], bool) or fields[k] < 1):
            raise ValueError(f"register_weights: {k}={fields[k]!r}: must be an integer >= 1 (pixels)")
    mean, std = fields.get("mean", IMAGENET_MEAN), fields.get("std", IMAGENET_STD)
    for k, v in (("mean", mean), ("std", std)):
        numbers = isinstance(v, (tuple, list)) and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                      for c in v)
        if not numbers or not v or (k == "std" and min(v) <= 0):
            raise ValueError(f"register_weights: {k}={v!r}: one number per input channel{' (> 0)' if k == 'std' else ''}")
    if len(mean) != len(std):
        raise ValueError(f"register_weights: mean={mean!r} and std={std!r}: one number per input channel each "
                         f"(ImageNet's, the default: 3)")
    if fields.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise ValueError(f"register_weights: interpolation={fields['interpolation']!r}: allowed {INTERPOLATIONS}")
    for k in ("mean", "std", "min_size"):
        if k in fields:
            fields[k] = tuple(fields[k])
    e = WeightEntry(model=model, tag=tag, url=url, sha256=digest, categories=int(categories), published=False,
                    names=names, model_overrides=tuple(sorted(dict(meta.get("model_overrides") or {}).items())),
                    **fields)
    _USER.setdefault(model, {})[tag] = e
    return e


def unregister(model: str, tag: str) -> None:
    """Remove a user entry (tests, notebooks)."""
    _USER.get(model, {}).pop(tag, None)
