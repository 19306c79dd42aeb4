"""Weights for a registered model, the one entry point:

    model, variables = zoo.load_pretrained("resnet50")                        # torchvision's DEFAULT tag
    model, variables = zoo.load_pretrained("resnet50", "IMAGENET1K_V1", num_classes=10)
    model, variables = zoo.load_pretrained("resnet18", file="resnet18.pth")   # a local file, no hash check
    zoo.register_weights("resnet18", "FLOWERS", url=..., sha256=..., categories=[...])

A tag is looked up in the catalogue (``zoo.weights.catalogue``), its file fetched and checked
(``zoo.weights.download``: cache, mirror, sha256), read without PyTorch (``zoo.weights.pth``),
converted (``zoo.convert``) and the conversion cached (``zoo.weights.cache``), so a second load reads
one safetensors file. The weights are converted for the model they were made for; the requested
model then takes them by THE head rule (``zoo.convert.merge_variables``): another ``num_classes``
gives a freshly initialised classifier (logged), and the auxiliary classifiers of published GoogLeNet /
Inception v3 weights are left out of a model built without them, as torchvision does.
"""
from __future__ import annotations

import logging
from typing import Any

import jax.numpy as jnp
from flax import traverse_util

from zoo import registry

log = logging.getLogger("zoo")


def _check_layout(name: str) -> registry.ModelInfo:
    info = registry.model_info(name)
    if info.weights_layout != "torchvision":
        with_layout = [n for n in registry.list_models() if registry.model_info(n).weights_layout == "torchvision"]
        raise ValueError(f"{name} ({info.cls.__name__}) has no torchvision counterpart, so there are no torchvision "
                         f"weights to convert for it; torchvision layouts exist for: {', '.join(with_layout)}")
    return info


def register_weights(name: str, tag: str, *, url: str, sha256: str, **meta: Any):
    """Add your own weights (a torchvision-layout ``.pth`` or ``.safetensors`` file at ``url``:
    http(s):// or file://) to the catalogue of this process as ``name``/``tag``; ``load_pretrained(
    name, tag)`` then downloads and checks them like published ones. ``sha256``: the file's hash
    (64 hex digits, or a prefix of at least 8). ``meta``: ``categories`` (class count, or the class
    names), ``resize_size`` / ``crop_size`` / ``interpolation`` / ``mean`` / ``std`` (evaluation
    preprocessing; default torchvision's 256 / 224 bilinear, ImageNet statistics), ``acc1``,
    ``acc5``, ``num_params``, ``model_overrides`` (``zoo.create`` options the weights need).
    Returns the :class:`zoo.weights.WeightEntry`."""
    from zoo.weights import catalogue  # noqa: PLC0415

    _check_layout(name)
    return catalogue.register(name, tag, url=url, sha256=sha256, **meta)


def published_variables(entry, *, cache_dir=None, progress: bool = True) -> dict:
    """The variables of catalogue ``entry`` for the model its file was made for (its own class
    count): from the conversion cache, else fetched, checked, read and converted (then cached)."""
    from zoo import convert  # noqa: PLC0415
    from zoo.weights import cache, download  # noqa: PLC0415

    variables = cache.read(entry, cache_dir)
    if variables is not None:
        log.info("%s %s: converted weights from the cache %s", entry.model, entry.tag,
                 cache.converted_path(entry, cache_dir))
        return variables
    path = download.fetch(entry, cache_dir=cache_dir, progress=progress)
    sd = convert.normalise_keys(entry.model, convert.load_state_dict(path))
    variables = convert.from_torchvision(entry.model, sd, model=convert.model_for_state_dict(entry.model, sd))
    from safetensors import SafetensorError  # noqa: PLC0415

    try:
        log.info("%s %s: converted %s, cached as %s", entry.model, entry.tag, path,
                 cache.write(entry, variables, cache_dir))
    # a read-only shared cache, or a full one (safetensors' own error): the conversion is an optimisation,
    # not the result
    except (OSError, SafetensorError) as e:
        log.warning("%s %s: converted %s, not cached (%s): it is converted again at each load", entry.model,
                    entry.tag, path, e)
    return variables


def _as_jax(variables: dict) -> dict:
    flat = traverse_util.flatten_dict(variables)  # jax arrays, in the model's order (jax.tree.map would sort)
    return traverse_util.unflatten_dict({p: jnp.asarray(v) for p, v in flat.items()})


def _head_classes(loaded: dict, info: registry.ModelInfo) -> int | None:
    kernel = loaded.get("params", {}).get(info.head[-1], {}).get("kernel")
    return int(kernel.shape[-1]) if kernel is not None else None


def load_pretrained(name: str, weights: str = "DEFAULT", *, num_classes: int | None = None, file=None,
                    cache_dir=None, progress: bool = True, **overrides: Any):
    """``(model, variables)``: ``zoo.create(name, num_classes=..., **overrides)`` with weights.

    ``weights``: a tag of the model's catalogue entries (``zoo.model_info(name).weights``:
    ``"IMAGENET1K_V1"``, ...; ``"DEFAULT"``: torchvision's default), downloaded into the cache
    (``cache_dir``, ``$ZOO_CACHE``, ``~/.cache/cnn-zoo``; ``$ZOO_WEIGHTS_MIRROR``) with a progress
    bar and checked against its sha256. ``file``: a local torchvision weight file (``.pth`` or
    ``.safetensors``) instead, not hash-checked. ``num_classes``: default the weights' own; another
    count gives a freshly initialised classifier (logged). Any other mismatch raises
    ``zoo.convert.WeightMismatchError``. Published googlenet / inception_v3 weights build the model
    with ``transform_input=True`` and torchvision's ``aux_logits`` for them (googlenet False,
    inception_v3 True; ``overrides`` win), as torchvision does; a model with ``aux_logits`` the weights
    lack gets fresh auxiliary classifiers."""
    from zoo import convert  # noqa: PLC0415  (conversion is only imported when weights are asked for)

    info = _check_layout(name)
    entry = None
    if file is not None:
        if weights != "DEFAULT":
            raise ValueError(f"load_pretrained({name!r}): give weights={weights!r} or file=, not both")
        if not str(file).strip():
            raise ValueError(f"load_pretrained({name!r}): file={file!r}: the path of a .pth or .safetensors file")
        if "transform_input" in info.options() and "transform_input" not in overrides:
            log.info("%s: file= builds the model with transform_input=False, as torchvision's load_state_dict "
                     "does; torchvision's published %s weights are used with transform_input=True (pass it, "
                     "or load them by tag)", name, name)
        sd = convert.normalise_keys(name, convert.load_state_dict(file))
        loaded = convert.from_torchvision(name, sd, model=convert.model_for_state_dict(
            name, sd, registry.create(name, **overrides)))
        source = str(file)
    else:
        from zoo.weights import catalogue  # noqa: PLC0415

        if not isinstance(weights, str):
            raise ValueError(f"load_pretrained({name!r}): weights={weights!r}: a tag (see zoo.model_info({name!r})"
                             f".weights) or 'DEFAULT'; for a model without weights use zoo.create")
        entry = catalogue.entry(name, weights)
        overrides = {**{k: v for k, v in entry.model_overrides if k in info.options()}, **overrides}
        loaded = published_variables(entry, cache_dir=cache_dir, progress=progress)
        source = f"{entry.tag} ({entry.filename})"
    classes = num_classes if num_classes is not None else _head_classes(loaded, info)
    model = registry.create(name, **({"num_classes": classes} if classes is not None else {}), **overrides)
    variables, replaced = convert.merge_variables(name, model, loaded)
    for module, (old, new) in replaced.items():
        if old is None:
            log.info("%s: head %s: not in %s, freshly initialised", name, module, source)
        elif new is None:
            log.info("%s: head %s of %s left out (the model is built without it)", name, module, source)
        else:
            log.info("%s: head %s: %d -> %d classes, freshly initialised (the rest loaded from %s)", name, module,
                     old, new, source)
    if entry is not None and entry.categories == 0 and not replaced:
        log.warning("%s %s: these weights have no usable classifier (features only)", name, entry.tag)
    return model, _as_jax(variables)
