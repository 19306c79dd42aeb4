"""Weights for a registered model: ``zoo.load_pretrained(name, file=...) -> (model, variables)``."""
from __future__ import annotations

from typing import Any


def load_pretrained(name: str, *, file, num_classes: int | None = None, **overrides: Any):
    """``(model, variables)``: ``zoo.create(name, num_classes=..., **overrides)`` with its variables
    loaded from a torchvision weight file (``.safetensors``, or ``.pth`` with PyTorch installed).
    A ``num_classes`` different from the file's gives a freshly initialised classifier (logged)."""
    from zoo import convert, registry  # noqa: PLC0415  (conversion is only imported when weights are asked for)

    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = registry.create(name, **overrides)
    return model, convert.load_pretrained(name, model, file)
