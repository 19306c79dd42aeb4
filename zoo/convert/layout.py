"""The torchvision layout of a zoo model, derived from the model itself, and conversion both ways:
``from_torchvision`` / ``to_torchvision`` / ``state_dict_shapes``.

Supported: every registered variant whose ``zoo.model_info(name).weights_layout`` is 'torchvision'
(``torchvision_models()``: alexnet, vgg*, resnet18-152, resnext*, wide_resnet*, densenet*,
mobilenet_v2, mobilenet_v3_*, shufflenet_v2_*, googlenet, inception_v3, squeezenet1_*, mnasnet*,
efficientnet_b0-b7, efficientnet_v2_*).
The others (``alexnet_v1``, ``mobilenet_v1*``, ``shufflenet_v1*``, ``lenet5*``, the CIFAR ResNets)
have no torchvision counterpart and are refused with a ValueError.

The rule (one table for every family). The zoo names each module after torchvision's attribute
path with ``.`` -> ``_`` (``layer1.0.conv1`` -> ``layer1_0/conv1``), so a torchvision key is our
module path with ``/`` and ``_`` turned into ``.``, plus the leaf. A family whose torchvision
attribute names contain ``_`` themselves declares them on its model class, ``torchvision_names``: a
regex matched against whole module names, which are then kept as they are (Inception v3:
``Mixed_5b/branch5x5_1/conv`` -> ``Mixed_5b.branch5x5_1.conv``):

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
of its init at ``model.example_input_shape()``), so every variant (and any constructor option, via
``model=``) is covered without a per-variant table. AlexNet's and VGG's first Linear follows a flatten
that is PyTorch's (channel-major, ``zoo.layers.flatten_nchw``), so it converts by transposition alone.
Legacy DenseNet keys of the torchvision download files (``denselayer1.norm.1.weight``) are renamed as
torchvision's own loader does; a ``module.`` prefix (``nn.DataParallel``) is stripped.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from zoo import registry

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

    def __init__(self, what: str, missing=(), unexpected=(), wrong_shape=(), hint: str | None = None):
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
        if hint:
            lines.append(f"  hint: {hint}")
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


def torch_name(model, module: str) -> str:
    """torchvision's attribute path of one of our module names: ``_`` -> ``.``, except for the names
    the model's class keeps whole (``torchvision_names``, a regex: Inception v3's ``Mixed_5b``)."""
    keep = getattr(type(model), "torchvision_names", None)
    return module if keep and re.fullmatch(keep, module) else module.replace("_", ".")


def _torch_key(model, module_path: tuple[str, ...], leaf: str) -> str:
    return ".".join(torch_name(model, part) for part in module_path) + "." + leaf


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


def abstract_variables(model) -> tuple[tuple[tuple[str, ...], ...], dict]:
    """(leaf paths in creation order, {path: ShapeDtypeStruct}) of ``model.init`` (traced, cached)."""
    return _cached("abstract", model, _trace_init)


def _trace_init(model):
    order: list[tuple[str, ...]] = []

    def init(x):
        variables = model.init(jax.random.key(0), x, train=False)
        order.extend(traverse_util.flatten_dict(variables).keys())  # dict insertion = creation order
        return variables

    shapes = jax.eval_shape(init, jax.ShapeDtypeStruct((1, *model.example_input_shape()), jnp.float32))
    return tuple(order), traverse_util.flatten_dict(shapes)


def _layout(model) -> tuple[Entry, ...]:
    order, shapes = abstract_variables(model)
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
            entries.append(Entry(_torch_key(model, module, table[leaf]), collection, (*module, leaf), tv_shape, our, sds.dtype))
        if any(c == "batch_stats" for c, _ in leaves):
            entries.append(Entry(_torch_key(model, module, COUNTER), None, module, (), (), np.int64))
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


def as_numpy(v) -> np.ndarray:
    """A numpy array of ``v`` (numpy, a torch tensor (bfloat16 as float32), anything array-like)."""
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
    sd = {str(k): as_numpy(v) for k, v in state_dict.items()}
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

def _with_file_heads(model, classes: int | None, has_aux: bool):
    """``model`` with the class count and the auxiliary classifiers (``aux_logits``) of a file."""
    kw = {}
    if classes is not None and classes != model.num_classes:
        kw["num_classes"] = classes
    if getattr(type(model), "aux_heads", ()) and has_aux != model.aux_logits:
        kw["aux_logits"] = has_aux
    return model.clone(**kw) if kw else model


def model_for_state_dict(name: str, state_dict: Mapping[str, Any], model=None):
    """The model a torchvision ``state_dict`` was made for: ``model`` (default ``zoo.create(name)``)
    with ``num_classes`` read from the file's classifier (``ModelInfo.head[-1]``, a linear or 1x1-conv
    weight) when it has one, and, for a model with auxiliary classifiers (``aux_heads``: GoogLeNet,
    Inception v3), ``aux_logits`` True exactly when the file holds them."""
    info = check_supported(name)
    sd = normalise_keys(name, state_dict)
    model = registry.create(name) if model is None else model
    head = sd.get(torch_name(model, info.head[-1]) + ".weight")
    classes = int(np.shape(head)[0]) if head is not None and np.ndim(head) in (2, 4) else None
    prefixes = tuple(torch_name(model, m) + "." for m in getattr(type(model), "aux_heads", ()))
    return _with_file_heads(model, classes, any(k.startswith(prefixes) for k in sd) if prefixes else False)


def _layout_hint(sd: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """Why a whole file misses: the zoo's own (Flax) names, or one prefix on every key (a wrapper
    module's, as PyTorch Lightning's ``model.``) that would match once stripped."""
    if sd and all(k.split("/")[0] in ("params", "batch_stats") for k in sd):
        return ("keys such as 'params/conv1/kernel' are the zoo's own (Flax) layout, not a torchvision state_dict: "
                "this file is not a torchvision weight file")
    first = {k.split(".")[0] for k in sd}
    if len(first) == 1 and "." in next(iter(sd)):
        prefix = first.pop() + "."
        if any(k[len(prefix):] in expected for k in sd):
            return (f"every key of the file starts with {prefix!r} (a wrapper module's name); strip it: "
                    f"{{k.removeprefix({prefix!r}): v for k, v in state_dict.items()}}")
    return None


def from_torchvision(name: str, state_dict: Mapping[str, Any], *, model=None) -> dict:
    """Flax variables (``{'params': ..., 'batch_stats': ...}``, numpy arrays in torchvision's order)
    from a torchvision ``state_dict`` (numpy arrays or torch tensors) of model ``name``.

    ``model``: the zoo model to load into (default: ``zoo.create(name)`` with ``num_classes`` read
    from the file's classifier and, for GoogLeNet / Inception v3, ``aux_logits`` from whether the file
    holds the auxiliary classifiers: :func:`model_for_state_dict`). Missing, extra or wrongly shaped keys
    raise :class:`WeightMismatchError` listing every offending key; ``num_batches_tracked`` entries are
    dropped. For a model with another class count than the file, see ``zoo.convert.convert_state_dict``."""
    check_supported(name)
    sd = normalise_keys(name, state_dict)
    if model is None:
        model = model_for_state_dict(name, sd)
    entries = layout(model)
    expected = {e.key: e for e in entries}
    missing = [(e.key, e.shape) for e in entries if e.collection is not None and e.key not in sd]
    unexpected = [(k, tuple(np.shape(v))) for k, v in sd.items() if k not in expected]
    wrong = [(e.key, e.shape, tuple(np.shape(sd[e.key]))) for e in entries
             if e.collection is not None and e.key in sd and tuple(np.shape(sd[e.key])) != e.shape]
    if missing or unexpected or wrong:
        raise WeightMismatchError(f"{name}: the weights do not match the model's torchvision layout", missing,
                                  unexpected, wrong, hint=_layout_hint(sd, expected))
    return traverse_util.unflatten_dict({(e.collection, *e.path): e.to_ours(sd[e.key]) for e in entries
                                         if e.collection is not None})


# ----------------------------------------------------------------------------- ours -> torchvision

def _model_for_variables(name: str, variables) -> Any:
    info = check_supported(name)
    model = registry.create(name)
    params = variables.get("params", {})
    kernel = params.get(info.head[-1], {}).get("kernel")  # (in, out) or HWIO: classes last
    classes = int(kernel.shape[-1]) if kernel is not None and kernel.ndim in (2, 4) else None
    return _with_file_heads(model, classes, any(m in params for m in getattr(type(model), "aux_heads", ())))


def to_torchvision(name: str, variables: Mapping[str, Any], *, model=None) -> dict[str, np.ndarray]:
    """torchvision ``state_dict`` (ordered ``{key: numpy array}``, torchvision names, order and
    layouts; ``num_batches_tracked`` = zeros int64) from our ``variables``. Load it into torchvision
    with ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` (MNASNet: an
    ``OrderedDict`` with ``_metadata = {"": {"version": 2}}``, torchvision's current layout, which
    its ``_load_from_state_dict`` requires).

    ``model``: the zoo model the variables belong to (default: ``zoo.create(name)`` with
    ``num_classes`` read from the classifier, and ``aux_logits`` from whether the variables hold the
    auxiliary classifiers)."""
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
