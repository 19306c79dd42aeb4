"""Weight files: ``load_state_dict`` reads ``.safetensors`` (``safetensors.numpy``: data only, no code)
and PyTorch ``.pth`` / ``.pt`` / ``.bin`` (both ``torch.save`` formats) through the restricted unpickler
of ``zoo.weights.pth``, without PyTorch; ``save_torchvision`` writes our variables as a torchvision
state_dict in safetensors. Nothing here ever executes code from a file."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from zoo.convert.layout import as_numpy, to_torchvision
from zoo.files import check_file_name, written_atomically
from zoo.weights.catalogue import SAFETENSORS_SUFFIXES, TORCH_SUFFIXES


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.numpy import load_file  # noqa: PLC0415

    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e


def _load_pth(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch ``.pth`` / ``.pt`` / ``.bin`` file (zip or legacy ``torch.save`` format) through the
    restricted unpickler of ``zoo.weights.pth``: tensors, storages and dicts only; no PyTorch needed,
    and a file that asks for anything else is refused before any of it runs."""
    from zoo.weights.pth import read_pth  # noqa: PLC0415

    try:
        obj = read_pth(path)
    except pickle.UnpicklingError as e:
        raise ValueError(str(e)) from e
    return _unwrap_state_dict(obj, path)


def _is_tensor_map(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "shape") for v in obj.values())


def _unwrap_state_dict(obj, path) -> dict[str, np.ndarray]:
    if _is_tensor_map(obj):
        return {str(k): as_numpy(v) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        for k in ("state_dict", "model_state_dict", "model"):
            if _is_tensor_map(obj.get(k)):
                return {str(kk): as_numpy(v) for kk, v in obj[k].items()}
    raise ValueError(f"{path}: holds no state_dict (a mapping of names to tensors, possibly under 'state_dict', "
                     f"'model_state_dict' or 'model'); found {type(obj).__name__}")


def load_state_dict(path) -> dict[str, np.ndarray]:
    """``{key: numpy array}`` from a weight file: ``.safetensors`` (``safetensors.numpy``, data only)
    or ``.pth`` / ``.pt`` / ``.bin`` (``zoo.weights.pth``: tensors only, no PyTorch). Never executes
    code from the file; a file that asks to (a pickled function call) raises ValueError."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"weight file {path} is a directory, not a weight file")
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _load_pth(path)
    raise ValueError(f"{path}: unknown weight file type {suffix!r}; allowed: "
                     f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}")


def check_safetensors_name(value: str, argument: str) -> Path:
    """``value`` (the ``argument`` a user gave) names a ``.safetensors`` file to write
    (``zoo.files.check_file_name``, then the suffix); ValueError naming it, before any work."""
    path = check_file_name(value, argument, "resnet18.safetensors")
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"{argument}={value!r}: weights are written as safetensors; use a .safetensors file name")
    return path


def save_torchvision(name: str, variables: Mapping[str, Any], path, *, model=None,
                     overwrite: bool = False) -> dict[str, np.ndarray]:
    """Write ``to_torchvision(name, variables)`` as a safetensors file (torch:
    ``safetensors.torch.load_file(path)`` then ``load_state_dict``); returns the state_dict. An existing
    file is kept (FileExistsError) unless ``overwrite=True``, which replaces it whole."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = check_safetensors_name(str(path), "path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; nothing was written (overwrite=True replaces it)")
    sd = to_torchvision(name, variables, model=model)
    with written_atomically(path) as tmp:   # a file it replaces stays whole until the new one is
        save_file(sd, tmp, metadata={"format": "pt", "model": name})
    return sd
