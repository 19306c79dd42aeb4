"""One registry for every model (timm-style): ``create``, ``list_models``, ``model_info``.

A family registers each variant with the class that builds it, the constructor arguments that make
it that variant, and the reference figures it is checked against (``../shared/reference.md``):

    register("resnet50", ResNet, dict(block="bottleneck", layers=(3, 4, 6, 3)), family="resnet",
             input_size=224, head=("fc",), params=25_557_032, macs=4.089e9, paper=PAPER)
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Any

import jax
import jax.numpy as jnp

from zoo.layers import ZooModel


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a variant. ``params``/``macs`` are the published reference
    figures (None where the reference gives none); ``params_approx`` is a published rounded
    figure as printed (e.g. ``"0.27M"``) for variants with no exact count. ``head`` names the
    top-level modules of the classifier that ``num_classes`` resizes (``('fc',)``): head replacement
    and ``freeze='backbone'`` use it."""

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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default ``(H, W, C)`` for one image."""
        return (self.input_size, self.input_size, self.kwargs.get("in_channels", 3))

    def options(self) -> tuple[str, ...]:
        """Constructor options a caller may override."""
        return tuple(f.name for f in dataclasses.fields(self.cls) if f.name not in ("parent", "name"))


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, cls: type, kwargs: dict | None = None, *, family: str, input_size: int, paper: str,
             head: tuple[str, ...], params: int | None = None, params_approx: str | None = None, macs: float | None = None) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if not issubclass(cls, ZooModel):
        raise TypeError(f"{cls} must subclass zoo.layers.ZooModel")
    kwargs = dict(kwargs or {})
    num_classes = kwargs.get("num_classes", next(f.default for f in dataclasses.fields(cls) if f.name == "num_classes"))
    _REGISTRY[name] = ModelInfo(name, family, cls, kwargs, input_size, num_classes, paper, tuple(head), params,
                                params_approx, macs)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style wildcard (``'resnet*'``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"see zoo.list_models() ({len(_REGISTRY)} models)"
        raise ValueError(f"unknown model name {name!r}; {hint}") from None


def create(name: str, **overrides: Any):
    """Build a registered model: ``zoo.create("resnet50", num_classes=10)``.

    Overrides are constructor options (``num_classes``, ``dtype``, ``param_dtype``, ``norm``,
    ``axis_name``, dropout rates, family options such as ``width_mult`` or ``small_input``).
    Returns a ``flax.linen.Module``; initialise it with ``model.init(rng, x, train=False)``.

    With ``pretrained=PATH`` (a torchvision weight file) it returns ``(model, variables)``.
    """
    info = model_info(name)
    pretrained = overrides.pop("pretrained", None)
    allowed = info.options()
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name} does not take option(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(allowed)}, pretrained")
    model = info.cls(**{**info.kwargs, **overrides})
    if pretrained is not None:
        from zoo import convert  # noqa: PLC0415  (only when asked: conversion is an optional path)
        return model, convert.load_pretrained(name, model, pretrained)
    return model


def fast_compile_options() -> dict:
    """XLA options for programs that run once (initialisation): no LLVM optimisation on CPU, which
    compiles 3-4x faster (the per-parameter threefry code is what XLA:CPU is slow to optimise).
    Values can differ from an optimised build in the last bits (float fusion)."""
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}


def init(model, input_shape, *, rng: int | jax.Array = 0, batch: int = 1) -> dict:
    """``model.init`` for one input shape ``(H, W, C)``, compiled once as a whole (fast on CPU, where
    an eager ``model.init`` compiles every op separately). Returns ``{'params', ['batch_stats']}``."""
    key = jax.random.PRNGKey(rng) if isinstance(rng, int) else rng
    x = jnp.zeros((batch, *input_shape), jnp.float32)
    fn = jax.jit(lambda k: model.init(k, x, train=False))
    return fn.lower(key).compile(compiler_options=fast_compile_options())(key)
