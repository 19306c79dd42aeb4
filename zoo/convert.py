"""torchvision weights in and out: ``from_torchvision`` / ``to_torchvision``, weight files, ``pretrained=``.

    sd = zoo.convert.load_state_dict("resnet50.safetensors")       # {torchvision key: numpy array}
    variables = zoo.convert.from_torchvision("resnet50", sd)       # {'params': ..., 'batch_stats': ...}
    sd2 = zoo.convert.to_torchvision("resnet50", variables)        # torchvision names and layouts
    model, variables = zoo.create("resnet50", num_classes=10, pretrained="resnet50.safetensors")

Supported: every variant of the seven families that torchvision has (``torchvision_models()``:
alexnet, vgg*, resnet18-152, resnext*, wide_resnet*, densenet*, mobilenet_v2, mobilenet_v3_*,
shufflenet_v2_*). ``alexnet_v1``, ``mobilenet_v1*``, ``shufflenet_v1*``, ``lenet5*`` and the CIFAR
ResNets (``resnet20``...) have no torchvision counterpart and are refused with a ValueError.

The rule (one table for every family). The zoo names each module after torchvision's attribute
path with ``.`` -> ``_`` (``layer1.0.conv1`` -> ``layer1_0/conv1``), and no torchvision attribute of
these families contains ``_``, so a torchvision key is our module path with ``/`` and ``_`` turned
into ``.``, plus the leaf:

=====================  ==============================  =====================================
ours                   torchvision                     layout
=====================  ==============================  =====================================
``kernel`` (4-D)       ``weight``                      conv: HWIO <-> OIHW
``kernel`` (2-D)       ``weight``                      linear: ``(in, out)`` <-> ``(out, in)``
``bias``               ``bias``                        as is
``scale``              ``weight``                      norm scale, as is
batch_stats ``mean``   ``running_mean``                as is
batch_stats ``var``    ``running_var``                 as is
(none)                 ``num_batches_tracked``         dropped on the way in; zeros int64 ``()`` out
=====================  ==============================  =====================================

The expected keys, shapes and torchvision's key order come from the model itself (``jax.eval_shape``
of its init), so every variant (and any constructor option, via ``model=``) is covered without a
per-variant table. AlexNet's and VGG's first Linear follows a flatten that is PyTorch's (channel-major,
``zoo.layers.flatten_nchw``), so it converts by transposition alone. Legacy DenseNet keys of the
torchvision download files (``denselayer1.norm.1.weight``) are renamed as torchvision's own loader does;
a ``module.`` prefix (``nn.DataParallel``) is stripped.

Weight files: ``.safetensors`` (read with ``safetensors.numpy``: data only, no code), and PyTorch
``.pth`` / ``.pt`` / ``.bin`` only through ``torch.load(path, map_location='cpu', weights_only=True)``
when torch is installed (torch is not a dependency). A file with missing keys, extra keys or wrong
shapes raises :class:`WeightMismatchError` listing each offending key with expected and found
shapes; nothing is loaded then.

Command line::

    python -m zoo.convert pth2safetensors resnet18 resnet18-f37072fd.pth resnet18.safetensors   # needs torch
    python -m zoo.convert check resnet18 resnet18.safetensors
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from zoo import registry
from zoo.compiling import compile_once

log = logging.getLogger("zoo")

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
MAX_LISTED = 40  # offending keys listed per category in an error message

# ours -> torchvision axes (numpy transpose); the inverse goes the other way.
_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}   # HWIO -> OIHW, (in, out) -> (out, in)
_TO_OURS = {4: (2, 3, 1, 0), 2: (1, 0)}    # OIHW -> HWIO, (out, in) -> (in, out)
_PARAM_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias"}
_STAT_LEAVES = {"mean": "running_mean", "var": "running_var"}
COUNTER = "num_batches_tracked"


class WeightMismatchError(ValueError):
    """A state_dict / variables tree does not match the model: ``missing``, ``unexpected`` and
    ``wrong_shape`` list the offending keys (``(key, expected shape)``, ``(key, found shape)``,
    ``(key, expected, found)``). Nothing is loaded when it is raised."""

    def __init__(self, what: str, missing=(), unexpected=(), wrong_shape=()):
        self.missing, self.unexpected, self.wrong_shape = list(missing), list(unexpected), list(wrong_shape)
        lines = [f"{what} (nothing was loaded):"]

        def section(title, items, fmt):
            if items:
                shown = "\n".join(f"    {fmt(*it)}" for it in items[:MAX_LISTED])
                more = f"\n    ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
                lines.append(f"  {title} ({len(items)}):\n{shown}{more}")

        section("missing keys", self.missing, lambda k, e: f"{k}: expected shape {list(e)}, not in the file")
        section("unexpected keys", self.unexpected, lambda k, f: f"{k}: found shape {list(f)}, not in the model")
        section("wrong shapes", self.wrong_shape, lambda k, e, f: f"{k}: expected shape {list(e)}, found {list(f)}")
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------- the layout table

@dataclasses.dataclass(frozen=True)
class Entry:
    """One torchvision state_dict entry and where it lives in our variables.

    ``collection`` is 'params' or 'batch_stats', or None for ``num_batches_tracked`` (no counterpart).
    ``shape`` is torchvision's (PyTorch layout), ``our_shape`` ours; ``dtype`` our leaf dtype."""

    key: str
    collection: str | None
    path: tuple[str, ...]
    shape: tuple[int, ...]
    our_shape: tuple[int, ...]
    dtype: Any

    @property
    def top_module(self) -> str | None:
        return self.path[0] if self.path else None

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(_TO_TORCH[a.ndim])) if a.ndim in _TO_TORCH and self.path[-1] == "kernel" \
            else np.ascontiguousarray(a)

    def to_ours(self, a: np.ndarray) -> np.ndarray:
        if a.ndim in _TO_OURS and self.path[-1] == "kernel":
            a = a.transpose(_TO_OURS[a.ndim])
        return np.asarray(a, dtype=self.dtype)


def torchvision_models() -> list[str]:
    """Registered models that torchvision also has, i.e. that ``from_torchvision`` converts."""
    return [n for n in registry.list_models() if registry.model_info(n).weights_layout == "torchvision"]


def check_supported(name: str) -> registry.ModelInfo:
    """The model's ``ModelInfo``; ValueError when the variant has no torchvision counterpart."""
    info = registry.model_info(name)
    if info.weights_layout != "torchvision":
        raise ValueError(f"{name} ({info.cls.__name__}) has no torchvision counterpart, so there are no torchvision "
                         f"weights to convert for it; torchvision layouts exist for: {', '.join(torchvision_models())}")
    return info


def _torch_key(module_path: tuple[str, ...], leaf: str) -> str:
    return ".".join(part.replace("_", ".") for part in module_path) + "." + leaf


def _cache_key(model):
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in ("parent", "name")}
    key = (type(model), tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in fields.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


_CACHE: dict = {}


def _cached(kind: str, model, fn):
    key = _cache_key(model)
    if key is None:
        return fn(model)
    if (kind, key) not in _CACHE:
        if len(_CACHE) > 128:
            _CACHE.clear()
        _CACHE[(kind, key)] = fn(model)
    return _CACHE[(kind, key)]


def layout(model) -> tuple[Entry, ...]:
    """The torchvision entries of ``model`` in torchvision's state_dict order (traced, not computed)."""
    return _cached("layout", model, _layout)


def _abstract_variables(model) -> tuple[tuple[tuple[str, ...], ...], dict]:
    """(leaf paths in creation order, {path: ShapeDtypeStruct}) of ``model.init``."""
    return _cached("abstract", model, _trace_init)


def _trace_init(model):
    spec = model.input_spec()
    size = spec.exact_size or max(spec.min_size, 64)
    order: list[tuple[str, ...]] = []

    def init(x):
        variables = model.init(jax.random.key(0), x, train=False)
        order.extend(traverse_util.flatten_dict(variables).keys())  # dict insertion = creation order
        return variables

    shapes = jax.eval_shape(init, jax.ShapeDtypeStruct((1, size, size, spec.channels), jnp.float32))
    return tuple(order), traverse_util.flatten_dict(shapes)


def _layout(model) -> tuple[Entry, ...]:
    order, shapes = _abstract_variables(model)
    modules: dict[tuple[str, ...], dict[tuple[str, str], Any]] = {}
    for path in order:
        collection, *module, leaf = path
        if collection not in ("params", "batch_stats"):
            raise ValueError(f"{type(model).__name__}: variables collection {collection!r} has no torchvision counterpart")
        modules.setdefault(tuple(module), {})[(collection, leaf)] = shapes[path]
    entries = []
    for module, leaves in modules.items():
        for (collection, leaf), sds in leaves.items():
            table = _PARAM_LEAVES if collection == "params" else _STAT_LEAVES
            if leaf not in table:
                raise ValueError(f"{type(model).__name__}: {collection} leaf {'/'.join((*module, leaf))} has no "
                                 f"torchvision counterpart")
        ordered = [("params", "kernel"), ("params", "scale"), ("params", "bias"), ("batch_stats", "mean"),
                   ("batch_stats", "var")]
        for collection, leaf in ordered:
            if (collection, leaf) not in leaves:
                continue
            sds = leaves[(collection, leaf)]
            our = tuple(sds.shape)
            tv_shape = tuple(our[i] for i in _TO_TORCH[len(our)]) if leaf == "kernel" and len(our) in _TO_TORCH else our
            table = _PARAM_LEAVES if collection == "params" else _STAT_LEAVES
            entries.append(Entry(_torch_key(module, table[leaf]), collection, (*module, leaf), tv_shape, our, sds.dtype))
        if any(c == "batch_stats" for c, _ in leaves):
            entries.append(Entry(_torch_key(module, COUNTER), None, module, (), (), np.int64))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{type(model).__name__}: module names do not map to distinct torchvision keys")
    return tuple(entries)


def state_dict_shapes(name: str, *, model=None) -> dict[str, tuple[int, ...]]:
    """``{torchvision key: shape}`` in torchvision's order for ``name`` (or the given ``model``)."""
    check_supported(name)
    return {e.key: e.shape for e in layout(model if model is not None else registry.create(name))}


# ----------------------------------------------------------------------------- key normalisation

_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _as_numpy(v) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # a torch tensor
        t = v.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(v)


def normalise_keys(name: str, state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Numpy values; a common ``module.`` prefix stripped; torchvision's legacy DenseNet names
    (``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``) renamed."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    sd = {str(k): _as_numpy(v) for k, v in state_dict.items()}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if registry.model_info(name).family == "densenet":
        out = {}
        for k, v in sd.items():
            m = _DENSENET_LEGACY.match(k)
            out[m.group(1) + m.group(2) if m else k] = v
        sd = out
    return sd


# ----------------------------------------------------------------------------- torchvision -> ours

def _model_for_state_dict(name: str, sd: Mapping[str, np.ndarray]):
    """The registered model with ``num_classes`` read from the file's classifier."""
    info = check_supported(name)
    head_key = info.head[-1].replace("_", ".") + ".weight"
    kw = {}
    if head_key in sd and np.ndim(sd[head_key]) == 2:
        kw["num_classes"] = int(np.shape(sd[head_key])[0])
    return registry.create(name, **kw)


def convert_state_dict(name: str, model, state_dict: Mapping[str, Any], *, replace_head: bool = False):
    """``(variables, replaced)``: ``state_dict`` (torchvision names and layouts) as our variables for
    ``model``. With ``replace_head``, a classifier (``ModelInfo.head``) whose class count differs from
    the file's is left out of ``variables`` and reported in ``replaced`` as
    ``{module: (classes in the file, classes of the model)}``; any other mismatch raises
    :class:`WeightMismatchError` listing every offending key."""
    info = check_supported(name)
    sd = normalise_keys(name, state_dict)
    entries = layout(model)
    expected = {e.key: e for e in entries}
    missing = [(e.key, e.shape) for e in entries if e.collection is not None and e.key not in sd]
    unexpected = [(k, tuple(np.shape(v))) for k, v in sd.items() if k not in expected]
    wrong = [(e, tuple(np.shape(sd[e.key]))) for e in entries
             if e.collection is not None and e.key in sd and tuple(np.shape(sd[e.key])) != e.shape]
    replaced: dict[str, tuple[int, int]] = {}
    if replace_head:
        # a classifier module is replaced when its entries differ in the class dimension (torch axis 0) only
        by_module: dict[str, list] = {}
        for e, found in wrong:
            if e.top_module in info.head:
                by_module.setdefault(e.top_module, []).append((e, found))
        for module, items in by_module.items():
            if all(len(f) == len(e.shape) and f[1:] == e.shape[1:] for e, f in items):
                replaced[module] = (items[0][1][0], items[0][0].shape[0])
        wrong = [(e, f) for e, f in wrong if e.top_module not in replaced]
    if missing or unexpected or wrong:
        raise WeightMismatchError(f"{name}: the weights do not match the model's torchvision layout", missing,
                                  unexpected, [(e.key, e.shape, f) for e, f in wrong])
    flat = {(e.collection, *e.path): e.to_ours(sd[e.key]) for e in entries
            if e.collection is not None and e.top_module not in replaced}
    return traverse_util.unflatten_dict(flat), replaced


def from_torchvision(name: str, state_dict: Mapping[str, Any], *, model=None) -> dict:
    """Flax variables (``{'params': ..., 'batch_stats': ...}``, numpy arrays) from a torchvision
    ``state_dict`` (numpy arrays or torch tensors) of model ``name``.

    ``model``: the zoo model to load into (default: ``zoo.create(name)`` with ``num_classes`` read
    from the file's classifier). Missing, extra or wrongly shaped keys raise
    :class:`WeightMismatchError`; ``num_batches_tracked`` entries are dropped."""
    check_supported(name)
    if model is None:
        model = _model_for_state_dict(name, normalise_keys(name, state_dict))
    variables, _ = convert_state_dict(name, model, state_dict)
    return variables


# ----------------------------------------------------------------------------- ours -> torchvision

def _model_for_variables(name: str, variables) -> Any:
    info = check_supported(name)
    kernel = variables.get("params", {}).get(info.head[-1], {}).get("kernel")
    kw = {"num_classes": int(kernel.shape[-1])} if kernel is not None and kernel.ndim == 2 else {}
    return registry.create(name, **kw)


def to_torchvision(name: str, variables: Mapping[str, Any], *, model=None) -> dict[str, np.ndarray]:
    """torchvision ``state_dict`` (ordered ``{key: numpy array}``, torchvision names, order and
    layouts; ``num_batches_tracked`` = zeros int64) from our ``variables``. Load it into torchvision
    with ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.

    ``model``: the zoo model the variables belong to (default: ``zoo.create(name)`` with
    ``num_classes`` read from the classifier)."""
    check_supported(name)
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables must be a mapping with 'params' (and 'batch_stats'), as model.init returns")
    others = sorted(set(variables) - {"params", "batch_stats"})
    if others:
        raise ValueError(f"variables collections {others} have no torchvision counterpart (expected 'params', "
                         f"'batch_stats')")
    if model is None:
        model = _model_for_variables(name, variables)
    entries = layout(model)
    flat = traverse_util.flatten_dict({c: variables[c] for c in ("params", "batch_stats") if c in variables})
    expected = {(e.collection, *e.path): e for e in entries if e.collection is not None}
    missing = [("/".join(p), e.our_shape) for p, e in expected.items() if p not in flat]
    unexpected = [("/".join(p), tuple(np.shape(v))) for p, v in flat.items() if p not in expected]
    wrong = [("/".join(p), e.our_shape, tuple(np.shape(flat[p]))) for p, e in expected.items()
             if p in flat and tuple(np.shape(flat[p])) != e.our_shape]
    if missing or unexpected or wrong:
        raise WeightMismatchError(f"{name}: the variables do not match the model", missing, unexpected, wrong)
    out = {}
    for e in entries:
        if e.collection is None:
            out[e.key] = np.zeros((), np.int64)
        else:
            out[e.key] = e.to_torch(np.asarray(jax.device_get(flat[(e.collection, *e.path)])))
    return out


# ----------------------------------------------------------------------------- weight files

def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.numpy import load_file  # noqa: PLC0415

    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e


PTH_HELP = ("convert it to safetensors where PyTorch is installed: "
            "python -m zoo.convert pth2safetensors MODEL FILE.pth FILE.safetensors "
            "(or: from safetensors.torch import save_file; "
            "save_file(torch.load('FILE.pth', weights_only=True), 'FILE.safetensors'))")


def _load_pth(path: Path) -> dict[str, np.ndarray]:
    """``torch.load(path, map_location='cpu', weights_only=True)``: PyTorch's restricted unpickler,
    which loads tensors and plain containers only and refuses anything that would run code."""
    try:
        import torch  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(f"{path}: reading PyTorch {path.suffix} files needs PyTorch, which is not installed "
                          f"(it is not a dependency of this project); {PTH_HELP}") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError as e:  # torch < 1.13 has no weights_only
        raise ImportError(f"{path}: needs torch >= 1.13 (torch.load(weights_only=True)); found {torch.__version__}") from e
    except Exception as e:  # noqa: BLE001  (pickle.UnpicklingError for anything that is not plain data)
        raise ValueError(f"{path}: torch.load(weights_only=True) refused or failed to read the file ({e})") from e
    return _unwrap_state_dict(obj, path)


def _is_tensor_map(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(hasattr(v, "shape") for v in obj.values())


def _unwrap_state_dict(obj, path) -> dict[str, np.ndarray]:
    if _is_tensor_map(obj):
        return {str(k): _as_numpy(v) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        for k in ("state_dict", "model_state_dict", "model"):
            if _is_tensor_map(obj.get(k)):
                return {str(kk): _as_numpy(v) for kk, v in obj[k].items()}
    raise ValueError(f"{path}: holds no state_dict (a mapping of names to tensors, possibly under 'state_dict', "
                     f"'model_state_dict' or 'model'); found {type(obj).__name__}")


def load_state_dict(path) -> dict[str, np.ndarray]:
    """``{key: numpy array}`` from a weight file: ``.safetensors`` (``safetensors.numpy``, data only)
    or ``.pth`` / ``.pt`` / ``.bin`` (``torch.load(weights_only=True)``, needs torch). Never executes
    code from the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _load_pth(path)
    raise ValueError(f"{path}: unknown weight file type {suffix!r}; allowed: "
                     f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}")


def save_torchvision(name: str, variables: Mapping[str, Any], path, *, model=None) -> dict[str, np.ndarray]:
    """Write ``to_torchvision(name, variables)`` as a safetensors file (torch: 
    ``safetensors.torch.load_file(path)`` then ``load_state_dict``); returns the state_dict."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    sd = to_torchvision(name, variables, model=model)
    path = Path(path).expanduser()
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"{path}: weights are written as safetensors; use a .safetensors file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata={"format": "pt", "model": name})
    return sd


# ----------------------------------------------------------------------------- pretrained

def init_modules(model, modules, rng=None) -> dict:
    """Fresh variables of the top-level ``modules`` of ``model`` (``{collection: {module: ...}}``),
    compiled alone: XLA drops the initialisers of every other layer."""
    spec = model.input_spec()
    size = spec.exact_size or max(spec.min_size, 64)
    x = jnp.zeros((1, size, size, spec.channels), jnp.float32)
    rng = jax.random.key(0) if rng is None else rng

    def init(key):
        v = model.init(key, x, train=False)
        return {c: {m: v[c][m] for m in modules if m in v.get(c, {})} for c in v}

    return compile_once(init, rng)(rng)


def load_pretrained(name: str, model, path, *, rng=None) -> dict:
    """Variables of ``model`` (``zoo.create(name, ...)``) loaded from a torchvision weight file.
    When the model's ``num_classes`` differs from the file's, the classifier (``ModelInfo.head``) is
    freshly initialised (from ``rng``, default key 0) and the rest loaded; a log line says so."""
    check_supported(name)
    sd = load_state_dict(path)
    variables, replaced = convert_state_dict(name, model, sd, replace_head=True)
    if replaced:
        fresh = init_modules(model, list(replaced), rng)
        for module, (old, new) in replaced.items():
            log.info("%s: head %s: %d -> %d classes, freshly initialised (the rest loaded from %s)", name, module,
                     old, new, path)
        for collection, subtree in fresh.items():
            for module, value in subtree.items():
                variables.setdefault(collection, {})[module] = value
    return _reorder(variables, model)


def _reorder(variables: dict, model) -> dict:
    """Nested dicts of jax arrays in the model's creation order (as ``model.init`` returns them)."""
    flat = traverse_util.flatten_dict(variables)
    order, _ = _abstract_variables(model)
    return traverse_util.unflatten_dict({p: jnp.asarray(flat[p]) for p in order if p in flat})


# ----------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.convert", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pth2safetensors", help="torchvision .pth (needs torch) -> checked .safetensors")
    a.add_argument("model")
    a.add_argument("src")
    a.add_argument("dst")
    c = sub.add_parser("check", help="check that a weight file converts to a zoo model")
    c.add_argument("model")
    c.add_argument("src")
    args = p.parse_args(argv)
    try:
        sd = load_state_dict(args.src)
        variables = from_torchvision(args.model, sd)
        n = sum(int(np.size(v)) for v in jax.tree.leaves(variables.get("params", {})))
        if args.cmd == "pth2safetensors":
            save_torchvision(args.model, variables, args.dst)
            print(f"{args.dst}: {args.model}, {n:,} parameters (torchvision names and layouts)")
        else:
            print(f"{args.src}: converts to {args.model} ({n:,} parameters)")
    except (ValueError, ImportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
