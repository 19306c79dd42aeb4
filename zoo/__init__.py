"""zoo: pure-functional flax.linen convolutional networks behind one registry.

    import zoo
    model = zoo.create("resnet50", num_classes=10)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
    logits = model.apply(variables, x, train=False)

``zoo.inspect`` (analyses, plots), ``zoo.convert`` (torchvision weights) and ``zoo.weights`` (the
catalogue of published weights, downloads) are imported on first use (``from zoo import inspect`` or
``zoo.inspect``): ``import zoo`` stays light. ``python -m zoo.predict`` and ``python -m zoo.export`` are
commands (top-5 classes of images; ONNX / StableHLO files).
"""
import importlib

from zoo import convs, layers
from zoo.compiling import init
from zoo.pretrained import load_pretrained, register_weights
from zoo.registry import Family, ModelInfo, create, list_models, model_info, register
from zoo.features import feature_gradients, feature_names, features
from zoo.summary import layer_table, macs, param_count, summary

# Families register their variants on import.
from zoo import (alexnet, densenet, efficientnet, googlenet, inception, lenet, mnasnet, mobilenet,  # noqa: E402,F401  isort: skip
                 resnet, shufflenet, squeezenet, vgg)

__all__ = ["create", "load_pretrained", "register_weights", "init", "list_models", "model_info", "register", "Family", "ModelInfo", "summary", "layer_table", "macs",
           "param_count", "convs", "layers", "features", "feature_names", "feature_gradients"]

_LAZY = {"inspect": "zoo.inspect", "convert": "zoo.convert", "weights": "zoo.weights"}


def __getattr__(name: str):
    """``zoo.inspect``, ``zoo.convert`` and ``zoo.weights``, imported on first use."""
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
