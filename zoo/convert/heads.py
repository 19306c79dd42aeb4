"""THE head-replacement rule, shared by loading weights (``zoo.load_pretrained``) and transfer learning
(``train.transfer``): weights made for one class count go into a model of another by keeping the
model's freshly initialised classifier (``ModelInfo.head``) wherever the weights shape it differently.

    variables, kept_fresh, left_out = merge_head(fresh, loaded, head=("fc",))

Auxiliary classifiers are part of the head (``ModelInfo.head``): a model built with them keeps them
fresh when the weights lack them, and the weights' auxiliary classifiers are left out of a model
built without them (torchvision's GoogLeNet weights carry ``aux1`` / ``aux2``). Anything else that
differs (a missing, extra or differently shaped leaf outside the head) is an error listing every
difference, raised before anything is changed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from zoo.compiling import compile_once
from zoo.convert.layout import (WeightMismatchError, abstract_variables, check_supported, from_torchvision,
                                model_for_state_dict, normalise_keys)


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree) if tree else {}


def _modules(paths) -> set[str]:
    """Top-level module names of flat variable paths ``(collection, module, ...)``."""
    return {p[1] for p in paths if len(p) > 1}


def merge_head(fresh: Mapping, loaded: Mapping, head: Sequence[str], *,
               what: str = "the weights do not match the model") -> tuple[dict, list[str], list[str]]:
    """``(variables, kept_fresh, left_out)``: ``fresh`` (``{'params': ..., 'batch_stats': ...}``, arrays
    or ``jax.ShapeDtypeStruct``) with every leaf taken from ``loaded``, cast to the fresh leaf's dtype, in
    ``fresh``'s order. Leaves under the ``head`` modules (top-level module names) that ``loaded`` lacks
    or shapes differently stay fresh and are listed in ``kept_fresh`` (``'params/fc/kernel'``); leaves of
    ``loaded`` under head modules that ``fresh`` does not have at all are listed in ``left_out``
    (an auxiliary classifier the model is built without). Any other missing, extra or differently
    shaped leaf raises :class:`WeightMismatchError` (message starting with ``what``) listing them all."""
    head = tuple(head)
    f, l_ = _flat(fresh), _flat(loaded)
    modules = _modules(f)
    missing, wrong, kept = [], [], []
    for path, value in f.items():
        is_head = len(path) > 1 and path[1] in head
        if path not in l_:
            (kept if is_head else missing).append(path)
        elif np.shape(l_[path]) != np.shape(value):
            (kept if is_head else wrong).append(path)
    extra = [p for p in l_ if p not in f]
    left_out = [p for p in extra if len(p) > 1 and p[1] in head and p[1] not in modules]
    unexpected = [p for p in extra if p not in left_out]
    if missing or unexpected or wrong:
        j = "/".join
        raise WeightMismatchError(what, [(j(p), np.shape(f[p])) for p in missing],
                                  [(j(p), np.shape(l_[p])) for p in unexpected],
                                  [(j(p), np.shape(f[p]), np.shape(l_[p])) for p in wrong])
    out = {p: (f[p] if p in kept else np.asarray(l_[p], dtype=f[p].dtype)) for p in f}
    return traverse_util.unflatten_dict(out), ["/".join(p) for p in kept], ["/".join(p) for p in left_out]


def init_modules(model, modules: Sequence[str], rng=None) -> dict:
    """Fresh variables of the top-level ``modules`` of ``model`` (``{collection: {module: ...}}``) for
    an input of ``model.example_input_shape()``, compiled once on their own (XLA drops the
    initialisers and the forward pass of every other layer)."""
    x = jnp.zeros((1, *model.example_input_shape()), jnp.float32)
    rng = jax.random.key(0) if rng is None else rng

    def init(key):
        v = model.init(key, x, train=False)
        return {c: {m: v[c][m] for m in modules if m in v.get(c, {})} for c in v}

    return compile_once(init, rng)(rng)


def convert_state_dict(name: str, model, state_dict: Mapping[str, Any], *, rng=None) -> tuple[dict, dict]:
    """``(variables, replaced)``: a torchvision ``state_dict`` as the variables of ``model`` (a
    ``zoo.create(name, ...)``), in the model's creation order.

    The weights are converted for the model they were made for (``model`` with the file's class
    count and auxiliary classifiers, ``from_torchvision``), then merged into ``model`` by
    :func:`merge_variables`. Any mismatch outside the head raises :class:`WeightMismatchError` listing
    every offending key."""
    check_supported(name)
    sd = normalise_keys(name, state_dict)
    source = model_for_state_dict(name, sd, model)
    return merge_variables(name, model, from_torchvision(name, sd, model=source), rng=rng)


def merge_variables(name: str, model, loaded: Mapping, *, rng=None) -> tuple[dict, dict]:
    """``(variables, replaced)``: converted variables ``loaded`` (made for ``name`` with any class count,
    with or without auxiliary classifiers) merged (:func:`merge_head`) into ``model``'s variables, in
    the model's creation order: where the classifiers' shapes differ or ``loaded`` lacks one, its
    modules are freshly initialised (from ``rng``, default key 0; only they are initialised); the
    auxiliary classifiers of ``loaded`` that ``model`` is built without are left out. ``replaced``:
    ``{module: (classes of the weights or None when they lack it, classes of the model or None when
    the model lacks it)}``."""
    info = check_supported(name)
    order, shapes = abstract_variables(model)
    abstract = traverse_util.unflatten_dict({p: shapes[p] for p in order})  # the model's order
    variables, kept, left_out = merge_head(abstract, loaded, info.head,
                                           what=f"{name}: the weights do not match the model")
    head_kernel = _flat(loaded).get(("params", info.head[-1], "kernel"))
    source_classes = int(np.shape(head_kernel)[-1]) if head_kernel is not None else None
    in_file, in_model = _modules(_flat(loaded)), _modules(order)
    replaced = {}
    for m in dict.fromkeys(p.split("/")[1] for p in kept + left_out):
        replaced[m] = (source_classes if m in in_file else None, model.num_classes if m in in_model else None)
    if not kept:
        return variables, replaced
    kept_paths = [tuple(p.split("/")) for p in kept]
    modules = list(dict.fromkeys(p[1] for p in kept_paths))
    fresh = _flat(init_modules(model, modules, rng))
    flat = _flat(variables)
    flat.update({p: fresh[p] for p in kept_paths})
    return traverse_util.unflatten_dict(flat), replaced
