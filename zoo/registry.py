"""One registry for every model (timm-style): ``create``, ``list_models``, ``model_info``.

A family states its defaults once (``Family``: paper, classifier modules, default input size, the
layout its published weights use) and defines each variant as one literal, greppable builder:

    RESNET = Family("resnet", paper=PAPER, head=("fc",), input_size=224, weights_layout="torchvision")

    @register(RESNET, params=25_557_032, macs=4.089e9)
    def resnet50(**kwargs) -> ResNet:
        return ResNet(block="bottleneck", layers=(3, 4, 6, 3), **kwargs)

``params`` / ``params_approx`` / ``macs`` are the published reference figures the variant is checked
against (``tests/fixtures/reference.json``, vendored from the papers and torchvision's metadata).
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from typing import Any, Callable, Sequence

from zoo.layers import ZooModel

WEIGHTS_LAYOUTS = ("torchvision",)


@dataclasses.dataclass(frozen=True)
class Family:
    """Defaults shared by a family's variants. ``head``: the top-level modules of the classifier that
    ``num_classes`` resizes (head replacement and ``freeze='backbone'`` use them). ``weights_layout``:
    'torchvision' when the variants' parameter names and layouts are torchvision's (``zoo.convert``
    converts their weights), None when there is no published counterpart. ``resize_size``: the short
    side images are resized to before the centre crop of ``input_size`` in evaluation (torchvision's
    ``resize_size`` of the weights' transforms); None: ``input_size / 0.875`` (256 for 224)."""

    name: str
    paper: str
    head: tuple[str, ...]
    input_size: int = 224
    weights_layout: str | None = None
    resize_size: int | None = None

    def __post_init__(self):
        if self.weights_layout is not None and self.weights_layout not in WEIGHTS_LAYOUTS:
            raise ValueError(f"weights_layout={self.weights_layout!r}: allowed {WEIGHTS_LAYOUTS} or None")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a variant. ``params``/``macs`` are the published reference
    figures (None where the reference gives none); ``params_approx`` is a published rounded
    figure as printed (e.g. ``"0.27M"``) for variants with no exact count. ``cls`` / ``kwargs``: the
    class the builder returns and the constructor arguments that make it this variant. ``head``: the
    family's classifier modules after the model's auxiliary classifiers (``cls.aux_heads``, present
    when the model's ``aux_logits`` is on; ``zoo.auxiliary``), the main classifier last."""

    name: str
    family: str
    cls: type
    kwargs: dict
    input_size: int
    num_classes: int
    paper: str
    head: tuple[str, ...] = ()
    params: int | None = None
    params_approx: str | None = None
    macs: float | None = None
    in_channels: int = 3
    weights_layout: str | None = None
    resize_size: int | None = None
    builder: Callable[..., ZooModel] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default ``(H, W, C)`` for one image."""
        return (self.input_size, self.input_size, self.in_channels)

    @property
    def crop_fraction(self) -> float:
        """Evaluation's centre crop as a fraction of the resized short side: ``input_size / resize_size``
        (Inception v3: 299 / 342), 0.875 without a ``resize_size`` (224 / 256)."""
        return self.input_size / self.resize_size if self.resize_size else 0.875

    @property
    def weights(self) -> tuple:
        """The weight entries of this model (``zoo.weights.WeightEntry``: tag, URL, acc@1/acc@5,
        evaluation preprocessing, ``default``), torchvision's published ones and those registered
        with ``zoo.register_weights``; read from the catalogue on first use."""
        from zoo.weights import catalogue  # noqa: PLC0415  (the JSON is read when weights are asked for)

        return catalogue.entries(self.name)

    def options(self) -> tuple[str, ...]:
        """Constructor options a caller may pass to ``create``."""
        return tuple(f.name for f in dataclasses.fields(self.cls) if f.name not in ("parent", "name"))


_REGISTRY: dict[str, ModelInfo] = {}
_TIMM_NAMES = {"in_chans": "in_channels", "drop_rate": "dropout"}   # timm.create_model's spellings


def _own_fields(model: ZooModel) -> dict:
    """The constructor fields of ``model`` whose values differ from its class defaults."""
    out = {}
    for f in dataclasses.fields(model):
        if f.name in ("parent", "name"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(model, f.name)
        if value != default:
            out[f.name] = value
    return out


def register(family: Family, *, params: int | None = None, params_approx: str | None = None,
             macs: float | None = None, **family_overrides: Any) -> Callable:
    """Decorator registering a variant builder under its function name. ``family_overrides`` replace
    the family's ``paper``, ``head``, ``input_size``, ``weights_layout`` or ``resize_size`` for this variant."""
    unknown = set(family_overrides) - {"paper", "head", "input_size", "weights_layout", "resize_size"}
    if unknown:
        raise TypeError(f"register() got unknown argument(s) {sorted(unknown)}")
    fam = dataclasses.replace(family, **family_overrides)

    def decorate(builder: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        model = builder()
        if not isinstance(model, ZooModel):
            raise TypeError(f"{name}() must return a zoo.layers.ZooModel, got {type(model)}")
        head = (*getattr(model, "aux_heads", ()), *fam.head)
        _REGISTRY[name] = ModelInfo(name, fam.name, type(model), _own_fields(model), fam.input_size, model.num_classes,
                                    fam.paper, head, params, params_approx, macs, model.in_channels,
                                    fam.weights_layout, fam.resize_size, builder)
        return builder

    return decorate


def list_models(pattern: str | Sequence[str] | None = None) -> list[str]:
    """Registered names, sorted; ``pattern``: a shell-style wildcard (``'resnet*'``) or several (a
    name matching any of them, as timm's ``filter`` / torchvision's ``include`` take)."""
    names = sorted(_REGISTRY)
    if not pattern:
        return names
    patterns = [pattern] if isinstance(pattern, str) else pattern
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"pattern={pattern!r}: a wildcard such as 'resnet*', a list of them, or None")
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def closest_names(name: str) -> list[str]:
    """Up to 5 registered names like ``name`` (a misspelt one), closest first."""
    return difflib.get_close_matches(str(name).lower(), _REGISTRY, n=5, cutoff=0.5)   # names are lower case


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = closest_names(name)
        hint = f"closest: {', '.join(close)}" if close else f"see zoo.list_models() ({len(_REGISTRY)} models)"
        raise ValueError(f"unknown model name {name!r}; {hint}") from None


def create(name: str, **overrides: Any) -> ZooModel:
    """Build a registered model: ``zoo.create("resnet50", num_classes=10)`` -> a ``flax.linen.Module``.

    Overrides are constructor options (``num_classes``, ``dtype``, ``param_dtype``, ``norm``,
    ``axis_name``, ``conv_impl``, dropout rates, family options such as ``small_input``). Initialise
    the model with ``zoo.init(model, shape)`` or ``model.init(rng, x, train=False)``; weights come
    from ``zoo.load_pretrained``.
    """
    info = model_info(name)
    if "pretrained" in overrides:
        raise ValueError(f"create() builds a model without weights; for weights call "
                         f"zoo.load_pretrained({name!r}, file=...), which returns (model, variables)")
    allowed = info.options()
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        close = sorted({c for u in unknown for c in difflib.get_close_matches(_TIMM_NAMES.get(u, u), allowed, n=2)})
        raise ValueError(f"{name} does not take option(s) {', '.join(map(repr, unknown))}; "
                         + (f"closest: {', '.join(close)}; " if close else "") + f"allowed: {', '.join(allowed)}")
    try:
        return info.builder(**overrides)
    except TypeError as e:
        fixed = re.search(r"multiple values for keyword argument '(\w+)'", str(e))
        if not fixed:
            raise
        field, value = fixed.group(1), getattr(info.builder(), fixed.group(1))
        given = tuple(overrides[field]) if isinstance(value, tuple) and isinstance(overrides[field], list) \
            else overrides[field]
        if given == value and type(given) is type(value):   # its own value (a list for a tuple): nothing to change
            return info.builder(**{k: v for k, v in overrides.items() if k != field})
        raise ValueError(f"{name} fixes {field}={value!r}; build "
                         f"{info.cls.__module__}.{info.cls.__name__} directly for other values") from None
