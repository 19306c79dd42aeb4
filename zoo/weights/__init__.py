"""Published weights by name: the catalogue, checked downloads, and ``.pth`` files read without PyTorch.

    zoo.model_info("resnet50").weights        # the model's entries: tags, acc@1/acc@5, preprocessing
    model, variables = zoo.load_pretrained("resnet50")                  # torchvision's DEFAULT (V2)
    zoo.register_weights("resnet18", "FLOWERS", url="https://...", sha256="...", categories=[...])

Modules: ``catalogue`` (torchvision's 60 published entries, package data read on first use, the
DEFAULT rule, user entries), ``download`` (cache, mirror, hash-checked atomic downloads), ``pth``
(the restricted unpickler for both ``torch.save`` formats), ``cache`` (converted variables, keyed by
the source file's hash). ``import zoo`` imports none of them.
"""
from zoo.weights.catalogue import (IMAGENET_MEAN, IMAGENET_STD, WeightEntry, entries, entry, imagenet_classes,
                                   models_with_weights)
from zoo.weights.download import DownloadError, HashMismatchError, cache_root, fetch
from zoo.weights.pth import UnsafePickleError, read_pth

__all__ = ["WeightEntry", "entries", "entry", "imagenet_classes", "models_with_weights", "IMAGENET_MEAN",
           "IMAGENET_STD", "fetch", "cache_root", "DownloadError", "HashMismatchError", "read_pth",
           "UnsafePickleError"]
