"""Intermediate feature maps by stable name, for research code (timm's ``features_only`` idea).

Two kinds of names:

* feature taps that every model marks (``zoo.layers.tap``): ``stem``, stage outputs (ResNet
  ``layer1``..``layer4``, VGG ``block3_conv1``, AlexNet ``relu7`` = fc7 after its ReLU...), and ``pre_logits`` (the vector fed
  to the classifier). ``feature_names(model, input_shape)`` lists them with their shapes.
* any module path (``layer1_0/conv1``, ``features_3``): that module's output, through Flax's
  ``capture_intermediates``.

    feats = zoo.features(model, variables, x, layers=["layer2", "pre_logits"])
    feats["layer2"].shape   # (B, H/8, W/8, 128) for resnet18

``train=True`` runs the training-mode forward pass (BatchNorm's batch statistics, dropout); a model
with dropout needs a key there, as ``model.apply`` in training mode: ``rngs={"dropout": key}``; the
same key gives the masks of ``model.apply(..., train=True, rngs={"dropout": key})``.

``feature_gradients`` differentiates a score with respect to tapped feature maps (Grad-CAM).
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.errors import InvalidRngError

from zoo.checks import check_model_input


def _mutable(train: bool, collection: str) -> list[str]:
    """The collections ``apply`` writes: ``collection``, and in training mode BatchNorm's statistics too."""
    return [collection, "batch_stats"] if train else [collection]


def _apply(model: nn.Module, variables, x, train: bool, collection: str, rngs, **kwargs):
    """``model.apply`` writing ``collection``; a model with dropout run in training mode without a
    dropout key is one line naming ``rngs`` (Flax's InvalidRngError otherwise)."""
    try:
        return model.apply(variables, x, train=train, mutable=_mutable(train, collection), rngs=rngs, **kwargs)
    except InvalidRngError:
        got = "none given" if rngs is None else f"got keys {sorted(rngs)}" if isinstance(rngs, dict) else "given"
        raise ValueError(f"zoo.features(train=True): {type(model).__name__}'s training-mode forward pass (dropout) "
                         f"needs a key: pass rngs={{'dropout': jax.random.key(0)}}, as model.apply takes in "
                         f"training mode ({got})") from None


def _tap_values(model: nn.Module, variables, x, train: bool = False, rngs=None) -> dict:
    _, state = _apply(model, variables, x, train, "features", rngs)
    return dict(state.get("features", {}))


def feature_names(model: nn.Module, input_shape) -> dict[str, tuple]:
    """Tap names of ``model`` with their shapes for one image of ``input_shape`` ``(H, W, C)``, in the
    order the forward pass taps them (traced with ``jax.eval_shape``: nothing is computed)."""
    x = jax.ShapeDtypeStruct((1, *check_model_input(model, input_shape)), jnp.float32)
    order: list[str] = []

    def run(x):
        variables = model.init(jax.random.key(0), x, train=False)
        taps = _tap_values(model, variables, x)
        order.extend(taps)  # sow order; the pytree eval_shape returns has its keys sorted
        return taps

    shapes = jax.eval_shape(run, x)
    return {k: tuple(shapes[k].shape) for k in order}


def features(model: nn.Module, variables, x, layers: Sequence[str] | None = None, *, train: bool = False,
             rngs: dict | None = None) -> dict:
    """Feature maps of ``x`` (``(B, H, W, C)``) by name: tap names or module paths.
    ``layers=None``: every tap; one name (a str) is a list of one. Unknown names: ValueError listing the taps.
    ``train=True``: the training-mode forward pass; a model with dropout needs ``rngs={'dropout': key}``
    there, as ``model.apply`` does (ValueError without it), and gets the same masks as ``model.apply``
    with that key."""
    if isinstance(layers, str):
        layers = [layers]
    taps = _tap_values(model, variables, x, train, rngs)
    if layers is None:
        return taps
    wanted = [n for n in layers if n not in taps]
    out = {n: taps[n] for n in layers if n in taps}
    if wanted:
        paths = {tuple(n.split("/")) for n in wanted}
        _, state = _apply(model, variables, x, train, "intermediates", rngs,
                          capture_intermediates=lambda mdl, method: method == "__call__" and mdl.path in paths)
        captured = state.get("intermediates", {})
        for n in wanted:
            node = captured
            for part in n.split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if not isinstance(node, dict) or "__call__" not in node:
                raise ValueError(f"layers: {n!r} is neither a feature tap ({', '.join(taps)}) nor a module path of "
                                 f"{type(model).__name__}")
            out[n] = node["__call__"][0]
    return out


def feature_gradients(model: nn.Module, variables, x, layers: Sequence[str],
                      score_fn: Callable[[jax.Array], jax.Array]) -> tuple[dict, dict]:
    """``(feature maps, d score / d feature maps)`` for tap names ``layers``; ``score_fn`` maps the
    logits ``(B, K)`` to a scalar (e.g. the sum of each image's class score)."""
    taps = _tap_values(model, variables, x)
    unknown = [n for n in layers if n not in taps]
    if unknown:
        raise ValueError(f"layers: {unknown} are not feature taps of {type(model).__name__}; taps: {', '.join(taps)}")
    zeros = {n: jnp.zeros_like(taps[n]) for n in layers}

    def score(perturb):
        logits = model.apply({**variables, "taps": perturb}, x, train=False)
        return score_fn(logits.astype(jnp.float32))

    grads = jax.grad(score)(zeros)
    return {n: taps[n] for n in layers}, grads
