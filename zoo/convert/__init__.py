"""torchvision weights in and out.

    sd = zoo.convert.load_state_dict("resnet50.safetensors")       # {torchvision key: numpy array}
    variables = zoo.convert.from_torchvision("resnet50", sd)       # {'params': ..., 'batch_stats': ...}
    sd2 = zoo.convert.to_torchvision("resnet50", variables)        # torchvision names and layouts
    model, variables = zoo.load_pretrained("resnet50", file="resnet50.safetensors", num_classes=10)

Modules: ``layout`` (the torchvision layout derived from the model, conversion both ways; the rule
table is in its docstring), ``files`` (weight-file IO: safetensors, ``.pth`` through
``torch.load(weights_only=True)``), ``heads`` (THE head-replacement rule, :func:`merge_head`, shared with
``train.transfer``), ``__main__`` (``python -m zoo.convert pth2safetensors|check ...``).

A file with missing keys, extra keys or wrong shapes raises :class:`WeightMismatchError` listing each
offending key with expected and found shapes; nothing is loaded then.
"""
from zoo.convert.files import TORCH_SUFFIXES, SAFETENSORS_SUFFIXES, load_state_dict, save_torchvision
from zoo.convert.heads import convert_state_dict, init_modules, merge_head, merge_variables
from zoo.convert.layout import (Entry, WeightMismatchError, abstract_variables, check_supported, from_torchvision,
                                layout, model_for_state_dict, normalise_keys, state_dict_shapes, to_torchvision,
                                torchvision_models)

__all__ = ["Entry", "WeightMismatchError", "abstract_variables", "check_supported", "convert_state_dict",
           "from_torchvision", "init_modules", "layout", "load_state_dict", "merge_head", "merge_variables", "model_for_state_dict",
           "normalise_keys", "save_torchvision", "state_dict_shapes", "to_torchvision", "torchvision_models",
           "SAFETENSORS_SUFFIXES", "TORCH_SUFFIXES"]
