"""Weights for a registered model, the one entry point: ``zoo.load_pretrained(name, file=...) ->
(model, variables)``. Today from a torchvision weight file; weights by tag (downloads, a catalogue)
will come through the same call: ``load_pretrained(name, weights="DEFAULT", *, num_classes=None,
file=None, cache_dir=None, progress=True)``."""
from __future__ import annotations

import logging
from typing import Any

import jax.numpy as jnp
from flax import traverse_util

from zoo import registry

log = logging.getLogger("zoo")


def load_pretrained(name: str, *, file=None, num_classes: int | None = None, **overrides: Any):
    """``(model, variables)``: ``zoo.create(name, num_classes=..., **overrides)`` with its variables
    loaded from a torchvision weight file ``file`` (``.safetensors``, or ``.pth`` with PyTorch
    installed; see ``zoo.convert``). A ``num_classes`` different from the file's gives a freshly
    initialised classifier (logged), and so does an auxiliary classifier the file lacks (``aux_logits``
    of GoogLeNet / Inception v3); the file's auxiliary classifiers are left out of a model built with
    ``aux_logits=False`` (logged). Any other mismatch raises ``zoo.convert.WeightMismatchError``."""
    from zoo import convert  # noqa: PLC0415  (conversion is only imported when weights are asked for)

    if file is None:
        raise TypeError(f"load_pretrained({name!r}): file= is required: a torchvision weight file (.safetensors, "
                        f"or .pth/.pt/.bin with PyTorch installed); weights by tag are not available yet")
    convert.check_supported(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = registry.create(name, **overrides)
    variables, replaced = convert.convert_state_dict(name, model, convert.load_state_dict(file))
    for module, (old, new) in replaced.items():
        if old is None:
            log.info("%s: head %s: not in %s, freshly initialised", name, module, file)
        elif new is None:
            log.info("%s: head %s of %s left out (the model is built without it)", name, module, file)
        else:
            log.info("%s: head %s: %d -> %d classes, freshly initialised (the rest loaded from %s)", name, module,
                     old, new, file)
    flat = traverse_util.flatten_dict(variables)  # jax arrays, in the model's order (jax.tree.map would sort)
    return model, traverse_util.unflatten_dict({p: jnp.asarray(v) for p, v in flat.items()})
