"""Seeing inside the networks: filters, feature maps, receptive fields, saliency, Grad-CAM, occlusion,
class models, nearest neighbours, and the classic fixed filters of the notes.

Every function takes any zoo model with its variables (``model, variables = train.restore(workdir)``
or ``zoo.create(...)`` + ``init``) and images ``x`` already normalised as the model was trained
(``train.data.preprocess_eval``), ``(B, H, W, C)`` or one ``(H, W, C)`` image. They return numpy
arrays; the ``plot_*`` functions write PNGs (matplotlib, Agg backend, imported only when plotting).

    from zoo import inspect as zi
    zi.first_layer_filters(model, variables)                 # (N, kh, kw, C_in) first conv kernels
    zi.feature_maps(model, variables, x, "block3_conv1")     # (B, h, w, C) any tap or module path
    zi.receptive_fields(model)                               # {name: ReceptiveField(size, jump, start)}
    zi.saliency(model, variables, x)                         # (B, H, W) max_c |dS_c / dI|
    zi.grad_cam(model, variables, x)                         # (B, H, W) ReLU(sum_k alpha_k A^k), upsampled
    zi.occlusion(model, variables, x[0], patch=7).map        # (H, W) drop of p_c under a grey patch
    img, scores = zi.class_model(model, variables, 3)        # argmax_I S_c(I) - lambda ||I||^2
    zi.neighbours(model, variables, x[0], images, k=5)       # nearest images in feature and pixel space
    zi.apply_filter(image, "sobel_vertical")                 # classic fixed filters via zoo.layers.conv2d

Conventions. The class score ``S_c`` is the logit (pre-softmax), as in Simonyan et al. (2014);
``class_index=None`` means the predicted class of each image. "Zero" and "grey" are 0 in the
normalised input space, i.e. the dataset mean colour. Module paths are Flax paths (``layer1_0/conv1``),
tap names those of ``zoo.feature_names``. The command ``python -m train.inspect`` writes all of this
as pictures for a trained run.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from zoo import layers
from zoo.features import feature_gradients, features
from zoo.layers import conv2d
from zoo.summary import abstract_variables, layer_table

__all__ = [
    "first_layer_filters", "feature_maps", "ReceptiveField", "receptive_fields", "receptive_field_table",
    "spatial_taps", "default_cam_layer", "predict", "saliency", "grad_cam", "Occlusion", "occlusion",
    "class_model", "embed", "nearest_neighbours", "neighbours", "FIXED_FILTERS", "apply_filter",
    "to_display", "plot_grid", "plot_filters", "plot_feature_maps", "plot_attribution", "plot_class_model",
    "plot_neighbours", "plot_fixed_filters",
]


# ----------------------------------------------------------------------------- helpers

def _batch(x) -> jax.Array:
    """``(H, W, C)`` or ``(B, H, W, C)`` -> float32 ``(B, H, W, C)``."""
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"x must be one image (H, W, C) or a batch (B, H, W, C), got shape {tuple(x.shape)}")
    return x


def _classes(class_index, batch: int) -> jax.Array:
    """int32 ``(B,)`` with -1 for "the predicted class"."""
    if class_index is None:
        return jnp.full((batch,), -1, jnp.int32)
    c = np.broadcast_to(np.asarray(class_index, np.int64), (batch,))
    return jnp.asarray(c, jnp.int32)


def _pick(logits: jax.Array, classes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(scores ``S_c`` (B,), classes used (B,)); class -1 is replaced by the argmax."""
    c = jnp.where(classes < 0, jnp.argmax(jax.lax.stop_gradient(logits), axis=-1), classes)
    return jnp.take_along_axis(logits, c[:, None], axis=1)[:, 0], c


def _default_input_shape(model) -> tuple[int, int, int]:
    spec = model.input_spec()
    size = spec.exact_size or max(spec.min_size, 224)
    return (size, size, spec.channels)


# ----------------------------------------------------------------------------- filters and feature maps

def first_layer_filters(model, variables, input_shape=None) -> np.ndarray:
    """The kernels of the first convolution the forward pass calls, ``(N, kh, kw, C_in / groups)``
    (HWIO -> one filter per row), e.g. AlexNet's 96 (``alexnet_v1``) or 64 (``alexnet``) 11x11x3 filters."""
    shape = tuple(input_shape) if input_shape is not None else _default_input_shape(model)
    rows = [r for r in layer_table(model, shape) if r.kind == "Conv"]
    if not rows:
        raise ValueError(f"{type(model).__name__} has no convolution layer")
    node = variables["params"]
    for part in rows[0].path.split("/"):
        node = node[part]
    return np.moveaxis(np.asarray(node["kernel"], np.float32), -1, 0)


def feature_maps(model, variables, x, layer: str) -> np.ndarray:
    """Feature maps ``(B, h, w, C)`` of the tap or module path ``layer`` for images ``x``
    (through :func:`zoo.features`). ValueError when the layer's output is not a spatial map."""
    out = np.asarray(features(model, variables, _batch(x), [layer])[layer])
    if out.ndim != 4:
        raise ValueError(f"layer {layer!r} is not a spatial feature map: its output has shape {out.shape}")
    return out


# ----------------------------------------------------------------------------- receptive fields

@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Theoretical receptive field of the units of one named value, per spatial dimension (rows, cols).

    ``size``: r, input pixels seen by one unit (padding included, so it may exceed the input).
    ``jump``: j, input pixels between neighbouring units (the cumulative stride).
    ``start``: input coordinate of the centre of the first unit's field (pixel centres are 0, 1, ...).
    ``spatial``: False once the map has been pooled or flattened away (``pre_logits``, dense layers):
    ``size`` is then the extent of the union of the fields of the map that was pooled, ``jump`` 0.
    """

    name: str
    kind: str            # 'tap' | 'module' | 'pool'
    shape: tuple         # output shape for one image
    size: tuple
    jump: tuple
    start: tuple
    spatial: bool


@dataclasses.dataclass(frozen=True)
class _Dim:
    """Receptive field of a value along one input dimension: held by array ``axis`` (None: pooled away)."""

    axis: int | None
    size: float
    jump: float
    start: float
    n: int

    def collapse(self) -> "_Dim":
        """Field of a unit that sees every unit along the axis (global pooling, flatten + dense)."""
        if self.axis is None:
            return self
        return _Dim(None, self.size + (self.n - 1) * self.jump, 0.0, self.start + (self.n - 1) * self.jump / 2, 1)

    def moved(self, axis: int | None, n: int | None = None) -> "_Dim":
        return dataclasses.replace(self, axis=axis, n=self.n if n is None else n)

    def window(self, axis_out: int, n_out: int, k: int, s: int, pad_lo: int, dil: int = 1, base_dil: int = 1) -> "_Dim":
        """The r / j / start recursion: r' = r + (k-1) d j, j' = j s, start' = start + ((k-1)/2 d - p) j."""
        j = self.jump / base_dil
        return _Dim(axis_out, self.size + (k - 1) * dil * j, j * s, self.start + ((k - 1) / 2 * dil - pad_lo) * j,
                    n_out)


_State = tuple  # (rows _Dim, cols _Dim) or None (value independent of the input)

_REDUCE = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or", "reduce_xor",
           "argmax", "argmin"}
_POOL_KIND = {"reduce_window_max": "max_pool", "reduce_window_sum": "avg_pool", "reduce_window_min": "min_pool",
              "reduce_window": "pool"}


def _combine(states: Sequence) -> _State | None:
    """Elementwise ops, concatenation: per dimension the largest field among inputs that still hold the
    dimension on an axis (equal jumps assumed); operands pooled over the whole map (global context:
    squeeze-excitation gates, group-norm statistics) are ignored next to a spatially resolved one."""
    states = [s for s in states if s is not None]
    if not states:
        return None
    out = []
    for d in range(2):
        dims = [s[d] for s in states]
        pool = [x for x in dims if x.axis is not None] or dims
        out.append(max(pool, key=lambda x: x.size))
    return tuple(out)


def _map_dims(state, fn) -> _State | None:
    return None if state is None else tuple(fn(d) for d in state)


def _reshape_dim(d: _Dim, in_shape, out_shape) -> _Dim:
    if d.axis is None:
        return d
    a = d.axis
    pre, size = math.prod(in_shape[:a]), in_shape[a]
    prefix = [math.prod(out_shape[:b]) for b in range(len(out_shape) + 1)]
    if size == 1:  # a size-1 axis survives only where it stays put
        keep = a < len(out_shape) and out_shape[a] == 1 and prefix[a] == pre
        return d.moved(a) if keep else d.collapse()
    for b in range(len(out_shape)):
        if prefix[b] == pre and out_shape[b] == size:
            return d.moved(b, size)
    # split into (outer, inner...): the outer axis sees the union over the inner positions
    b1 = [b for b in range(len(out_shape)) if prefix[b] == pre]
    b2 = [b for b in range(len(out_shape)) if prefix[b + 1] == pre * size]
    if b1 and b2 and b2[-1] >= b1[0]:
        parts = [b for b in range(b1[0], b2[-1] + 1) if out_shape[b] > 1]
        if parts:
            outer = parts[0]
            m = size // out_shape[outer]
            return _Dim(outer, d.size + (m - 1) * d.jump, d.jump * m, d.start + (m - 1) * d.jump / 2, out_shape[outer])
    return d.collapse()  # merged with other axes (flatten)


_CALLS = ("pjit", "jit", "closed_call", "core_call", "named_call", "custom_jvp_call", "custom_vjp_call",
          "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint")


def _sub_jaxpr(eqn):
    """The body of a call-like equation (jit, custom_jvp/vjp, remat), whose inputs and outputs are the
    equation's; None for everything else (reducers of reduce/reduce_window are not calls)."""
    if eqn.primitive.name not in _CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if j is None:
            continue
        inner = j.jaxpr if isinstance(j, jcore.ClosedJaxpr) else j
        if isinstance(inner, jcore.Jaxpr) and len(inner.invars) == len(eqn.invars) \
                and len(inner.outvars) == len(eqn.outvars):
            return inner
    return None


class _Walker:
    """Propagates receptive fields through a jaxpr (conv_general_dilated and reduce_window carry the
    windows; shape ops move axes; elementwise ops take the largest field)."""

    def __init__(self):
        self.order: dict[Any, int] = {}   # var -> index of the equation that produced it
        self.pools: list[tuple[int, str, Any, tuple]] = []   # (index, name, state, shape)
        self.pool_count: dict[tuple[str, str], int] = {}
        self.unknown: set[str] = set()
        self.counter = 0

    def run(self, jaxpr, in_states, scope: str | None = None):
        env: dict = {}

        def read(v):
            return None if isinstance(v, jcore.Literal) else env.get(v)

        for v, s in zip(jaxpr.invars, in_states):
            env[v] = s
        for eqn in jaxpr.eqns:
            self.counter += 1
            here = self.counter
            name_stack = str(eqn.source_info.name_stack)
            eqn_scope = scope if scope is not None else "/".join(name_stack.split("/")[1:])
            ins = [read(v) for v in eqn.invars]
            if all(s is None for s in ins):
                outs = [None] * len(eqn.outvars)
            else:
                inner = _sub_jaxpr(eqn)
                if inner is not None:
                    outs = self.run(inner, ins, eqn_scope)
                else:
                    outs = self.rule(eqn, ins, eqn_scope, here)
            for v, s in zip(eqn.outvars, outs):
                env[v] = s
                self.order.setdefault(v, here)
        return [read(v) for v in jaxpr.outvars]

    def rule(self, eqn, ins, scope, here):
        name, p = eqn.primitive.name, eqn.params
        in_shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
        out_shapes = [tuple(v.aval.shape) for v in eqn.outvars]
        out_shape = out_shapes[0]
        if name == "conv_general_dilated":
            dn = p["dimension_numbers"]
            lhs_sp, rhs_sp, out_sp = dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:]
            kernel = in_shapes[1]

            def conv(d):
                if d.axis is None:
                    return d
                if d.axis not in lhs_sp:
                    return d.collapse()
                i = lhs_sp.index(d.axis)
                return d.window(out_sp[i], out_shape[out_sp[i]], kernel[rhs_sp[i]], p["window_strides"][i],
                                p["padding"][i][0], p["rhs_dilation"][i], p["lhs_dilation"][i])
            return [_combine([_map_dims(ins[0], conv), _map_dims(ins[1], _Dim.collapse)])]
        if name in _POOL_KIND:
            k_, s_, pad = p["window_dimensions"], p["window_strides"], p["padding"]
            wd, bd = p.get("window_dilation") or (1,) * len(k_), p.get("base_dilation") or (1,) * len(k_)
            n_ops = len(eqn.outvars)
            windowed = []

            def pool(d):
                if d.axis is None:
                    return d
                a = d.axis
                if k_[a] == 1 and s_[a] == 1 and tuple(pad[a]) == (0, 0) and bd[a] == 1:
                    return d
                windowed.append(a)
                return d.window(a, out_shape[a], k_[a], s_[a], pad[a][0], wd[a], bd[a])
            outs = [_map_dims(s, pool) for s in ins[:n_ops]]
            out = _combine(outs)
            if windowed and out is not None:
                kind = _POOL_KIND[name]
                key = (scope, kind)
                self.pool_count[key] = self.pool_count.get(key, 0) + 1
                pname = f"{kind}{self.pool_count[key]}"
                self.pools.append((here, f"{scope}/{pname}" if scope else pname, out, out_shape))
            return [out] * n_ops
        if name in _REDUCE or name == "reduce":
            axes = tuple(p["axes"] if "axes" in p else p["dimensions"])

            def red(d):
                if d.axis is None:
                    return d
                if d.axis in axes:
                    return d.collapse()
                return d.moved(d.axis - sum(a < d.axis for a in axes))
            return [_combine([_map_dims(s, red) for s in ins[:len(eqn.outvars)]])] * len(eqn.outvars)
        if name == "reshape":
            return [_map_dims(ins[0], lambda d: _reshape_dim(d, in_shapes[0], out_shape))]
        if name == "transpose":
            perm = list(p["permutation"])
            return [_map_dims(ins[0], lambda d: d if d.axis is None else d.moved(perm.index(d.axis)))]
        if name == "squeeze":
            dims = tuple(a % len(in_shapes[0]) for a in p["dimensions"])
            return [_map_dims(ins[0], lambda d: d if d.axis is None else (
                d.collapse() if d.axis in dims else d.moved(d.axis - sum(a < d.axis for a in dims))))]
        if name == "broadcast_in_dim":
            bdims = p["broadcast_dimensions"]

            def bcast(d):
                if d.axis is None:
                    return d
                b = bdims[d.axis]
                if in_shapes[0][d.axis] == 1 and out_shape[b] > 1:
                    return _Dim(b, d.size, 0.0, d.start, out_shape[b])
                return d.moved(b)
            return [_map_dims(ins[0], bcast)]
        if name == "concatenate":
            dim = p["dimension"]
            out = _combine(ins)
            return [_map_dims(out, lambda d: d.moved(d.axis, out_shape[dim]) if d.axis == dim else d)]
        if name == "slice":
            starts, strides = p["start_indices"], p["strides"] or (1,) * len(out_shape)
            return [_map_dims(ins[0], lambda d: d if d.axis is None else _Dim(
                d.axis, d.size, d.jump * strides[d.axis], d.start + starts[d.axis] * d.jump, out_shape[d.axis]))]
        if name == "pad":
            cfg = p["padding_config"]

            def padded(d):
                if d.axis is None:
                    return d
                lo, _, interior = cfg[d.axis]
                j = d.jump / (interior + 1)
                return _Dim(d.axis, d.size, j, d.start - lo * j, out_shape[d.axis])
            return [_combine([_map_dims(ins[0], padded), ins[1]])]
        if name == "split":
            axis, offsets = p["axis"], np.concatenate([[0], np.cumsum(p["sizes"])[:-1]])
            return [_map_dims(ins[0], lambda d, o=int(o), n=int(n): d if d.axis != axis else _Dim(
                d.axis, d.size, d.jump, d.start + o * d.jump, n)) for o, n in zip(offsets, p["sizes"])]
        if name == "dot_general":
            (lc, rc), (lb, rb) = p["dimension_numbers"]
            nl = len(in_shapes[0])
            lfree = [a for a in range(nl) if a not in lc and a not in lb]
            rfree = [a for a in range(len(in_shapes[1])) if a not in rc and a not in rb]

            def side(contract, batch, free, offset):
                def f(d):
                    if d.axis is None:
                        return d
                    if d.axis in contract:
                        return d.collapse()
                    if d.axis in batch:
                        return d.moved(list(batch).index(d.axis))
                    return d.moved(offset + free.index(d.axis))
                return f
            return [_combine([_map_dims(ins[0], side(lc, lb, lfree, len(lb))),
                              _map_dims(ins[1], side(rc, rb, rfree, len(lb) + len(lfree)))])]
        if name == "gather":
            dn = p["dimension_numbers"]
            sizes = p["slice_sizes"]
            skipped = set(dn.collapsed_slice_dims) | set(getattr(dn, "operand_batching_dims", ()))
            kept = [a for a in range(len(in_shapes[0])) if a not in skipped]

            def gat(d):
                if d.axis is None:
                    return d
                a = d.axis
                if a in kept and a not in dn.start_index_map and sizes[a] == in_shapes[0][a]:
                    return d.moved(dn.offset_dims[kept.index(a)])
                return d.collapse()
            return [_combine([_map_dims(ins[0], gat), _map_dims(ins[1], _Dim.collapse)])]
        # elementwise (same shapes), or unknown: everything seen by the inputs, pooled
        live = [(s, sh) for s, sh in zip(ins, in_shapes) if s is not None]
        if all(o == out_shape for o in out_shapes) and all(
                len(sh) == len(out_shape) and all(a in (1, b) for a, b in zip(sh, out_shape)) for _, sh in live):
            # elementwise, with lax's implicit broadcasting of size-1 axes: those units all see one field
            def bcast(d, sh):
                if d.axis is None or sh[d.axis] == out_shape[d.axis]:
                    return d
                return _Dim(d.axis, d.size, 0.0, d.start, out_shape[d.axis])
            return [_combine([_map_dims(s, lambda d, sh=sh: bcast(d, sh)) for s, sh in live])] * len(eqn.outvars)
        self.unknown.add(name)
        return [_combine([_map_dims(s, _Dim.collapse) for s, _ in live])] * len(eqn.outvars)


def _num(v: float):
    return int(v) if float(v).is_integer() else float(v)


def receptive_fields(model, input_shape=None, *, variables=None, modules: bool = True) -> dict[str, ReceptiveField]:
    """Receptive field size, jump (stride) and start of every named layer, computed from the architecture.

    The forward pass is traced (``jax.make_jaxpr``; nothing is computed) and the usual recursion
    ``j_out = j_in s``, ``r_out = r_in + (k - 1) d j_in``, ``start_out = start_in + ((k - 1)/2 d - p) j_in``
    is applied at every ``conv_general_dilated`` and ``reduce_window`` (pooling) primitive, per spatial
    dimension; elementwise ops and concatenations take the largest field of their inputs (residual
    branches: equal jumps assumed), global pooling and flattening give the union of the pooled map's
    fields (``spatial=False``). Operands pooled over the whole map and broadcast back (squeeze-excitation
    gates, group-norm statistics) are ignored beside the spatial path, as receptive-field tables do.

    Returns ``{name: ReceptiveField}`` in the order the forward pass produces them: feature taps
    (``kind='tap'``), module outputs by Flax path (``'module'``, when ``modules``), and pooling ops
    that are not modules (``'pool'``: ``max_pool1``, ``max_pool2``..., prefixed by the module that calls
    them, e.g. ``features_transition1/avg_pool1``). ``input_shape`` ``(H, W, C)``: default the model's exact
    size, else 224 (fields of spatial layers do not depend on it; only the pooled unions do).

        rf = receptive_fields(zoo.create("vgg16"))
        rf["block1_conv2"].size, rf["max_pool5"].size, rf["max_pool5"].jump   # (5, 5) (212, 212) (32, 32)
    """
    shape = tuple(input_shape) if input_shape is not None else _default_input_shape(model)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    if variables is None:
        v = abstract_variables(model, shape)
    else:
        v = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), variables)
    collections = ["features"] + (["intermediates"] if modules else [])

    lax_model = model.clone(conv_impl="lax")  # one conv primitive per convolution

    def forward(v, x):
        return lax_model.apply(v, x, train=False, mutable=collections, capture_intermediates=modules)

    closed, out_shapes = jax.make_jaxpr(forward, return_shape=True)(v, x)
    jaxpr = closed.jaxpr
    h, w = shape[0], shape[1]
    x_state = (_Dim(1, 1.0, 1.0, 0.0, h), _Dim(2, 1.0, 1.0, 0.0, w))
    walker = _Walker()
    in_states = [None] * (len(jaxpr.invars) - 1) + [x_state]
    out_states = walker.run(jaxpr, in_states)
    if walker.unknown:
        warnings.warn(f"receptive_fields: primitives {sorted(walker.unknown)} treated as global (every input "
                      "position reaches every output)", stacklevel=2)

    entries = []  # (order, rank, name, kind, state, shape)
    paths = jax.tree_util.tree_flatten_with_path(out_shapes)[0]
    for (path, aval), var, state in zip(paths, jaxpr.outvars, out_states):
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        if state is None or keys[0] != 1:
            continue  # logits, or independent of the input
        coll, rest = keys[1], keys[2:]
        if coll == "features":
            name, kind = str(rest[0]), "tap"
        elif coll == "intermediates" and "__call__" in rest:
            i = rest.index("__call__")
            if i == 0:
                continue  # the model's own output
            name = "/".join(map(str, rest[:i])) + "".join(f"[{k}]" for k in rest[i + 2:])
            kind = "module"
        else:
            continue
        order = 0 if isinstance(var, jcore.Literal) else walker.order.get(var, 0)
        entries.append((order, 0 if kind == "module" else 1, name, kind, state, tuple(aval.shape)))
    entries += [(i, 2, name, "pool", st, sh) for i, name, st, sh in walker.pools]
    entries.sort(key=lambda e: (e[0], e[1]))
    out: dict[str, ReceptiveField] = {}
    for _, _, name, kind, st, sh in entries:
        if name in out:
            continue
        out[name] = ReceptiveField(name, kind, sh, tuple(_num(d.size) for d in st), tuple(_num(d.jump) for d in st),
                                   tuple(_num(d.start) for d in st), all(d.axis is not None for d in st))
    return out


def receptive_field_table(fields: dict[str, ReceptiveField]) -> str:
    """A printable table (name, kind, output shape, size, jump, start) of :func:`receptive_fields`."""
    def pair(t):
        return str(t[0]) if t[0] == t[1] else f"{t[0]}x{t[1]}"
    w = max([len(n) for n in fields] + [5])
    lines = [f"{'layer':<{w}}  {'kind':<6} {'output':<16} {'size':>9} {'jump':>6} {'start':>8}", "-" * (w + 50)]
    for r in fields.values():
        size = pair(r.size) + ("" if r.spatial else " (g)")
        lines.append(f"{r.name:<{w}}  {r.kind:<6} {'x'.join(map(str, r.shape[1:])):<16} {size:>9} "
                     f"{pair(r.jump):>6} {pair(r.start):>8}")
    lines.append("(g): pooled over the map: size is the union of the pooled units' fields")
    return "\n".join(lines)


def spatial_taps(model, input_shape=None) -> list[str]:
    """Feature taps holding a spatial map (at least 2x2), in forward order."""
    rf = receptive_fields(model, input_shape, modules=False)
    return [r.name for r in rf.values() if r.kind == "tap" and r.spatial and len(r.shape) == 4
            and min(r.shape[1:3]) >= 2]


def default_cam_layer(model, input_shape=None) -> str:
    """Grad-CAM's default layer: the last feature tap that is still a spatial map of at least 2x2
    (ResNet ``layer4``, VGG ``block5_conv3``, AlexNet ``relu5``, LeNet ``s4``, DenseNet ``norm5``...)."""
    taps = spatial_taps(model, input_shape)
    if not taps:
        raise ValueError(f"{type(model).__name__} has no spatial feature tap for Grad-CAM")
    return taps[-1]


# ----------------------------------------------------------------------------- gradients of the class score

@functools.partial(jax.jit, static_argnums=0)
def _logits(model, variables, x):
    return model.apply(variables, x, train=False).astype(jnp.float32)


def predict(model, variables, x) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes (B,), softmax probabilities (B, K))."""
    logits = _logits(model, variables, _batch(x))
    return np.asarray(jnp.argmax(logits, -1)), np.asarray(jax.nn.softmax(logits, -1))


@functools.partial(jax.jit, static_argnums=0)
def _input_gradient(model, variables, x, classes):
    def total(x):
        scores, c = _pick(model.apply(variables, x, train=False).astype(jnp.float32), classes)
        return scores.sum(), c
    return jax.grad(total, has_aux=True)(x)


def saliency(model, variables, x, class_index=None) -> np.ndarray:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014): ``max_c |dS_c / dI|`` over
    the colour channels, ``(B, H, W)``, non-negative. ``class_index``: int or (B,) ints (default: predicted)."""
    x = _batch(x)
    grads, _ = _input_gradient(model, variables, x, _classes(class_index, x.shape[0]))
    return np.asarray(jnp.abs(grads).max(axis=-1))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _grad_cam(model, variables, x, layer, classes):
    def score(logits):
        return _pick(logits, classes)[0].sum()
    feats, grads = feature_gradients(model, variables, x, [layer], score)
    a, g = feats[layer].astype(jnp.float32), grads[layer].astype(jnp.float32)
    alpha = g.mean(axis=(1, 2))                                  # (B, K): global-average of dS_c/dA^k
    cam = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, alpha))      # (B, h, w)
    up = jax.image.resize(cam, (x.shape[0], *x.shape[1:3]), "bilinear")
    return jnp.maximum(up, 0.0), cam


def grad_cam(model, variables, x, class_index=None, layer: str | None = None, *, upsample: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ``alpha_k^c = mean_ij dS_c / dA^k_ij``, map
    ``ReLU(sum_k alpha_k^c A^k)`` at tap ``layer`` (default :func:`default_cam_layer`), bilinearly
    upsampled to the input size: ``(B, H, W)`` (``upsample=False``: the layer's ``(B, h, w)``), >= 0."""
    x = _batch(x)
    layer = layer or default_cam_layer(model, x.shape[1:])
    up, cam = _grad_cam(model, variables, x, layer, _classes(class_index, x.shape[0]))
    return np.asarray(up if upsample else cam)


# ----------------------------------------------------------------------------- occlusion

class Occlusion(NamedTuple):
    """``map``: (H, W) mean drop of the class probability over the patches covering each pixel;
    ``drops``: (len(rows), len(cols)) drop per patch position (top-left corners ``rows`` x ``cols``);
    ``probability``: p_c of the unoccluded image; ``class_index``; ``patch``: side in pixels."""

    map: np.ndarray
    drops: np.ndarray
    probability: float
    class_index: int
    rows: np.ndarray
    cols: np.ndarray
    patch: int


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _occluded_probabilities(model, variables, x, c, corners, fill, patch, batch_size):
    h, w = x.shape[:2]
    rows, cols = jnp.arange(h), jnp.arange(w)

    def prob(corner):
        y0, x0 = corner[0], corner[1]
        inside = ((rows >= y0) & (rows < y0 + patch))[:, None] & ((cols >= x0) & (cols < x0 + patch))[None, :]
        img = jnp.where(inside[..., None], fill, x)
        logits = model.apply(variables, img[None], train=False)[0].astype(jnp.float32)
        return jax.nn.softmax(logits)[c]

    # lax.map with batch_size: chunks of batch_size occluded copies, each one vmapped (batched) forward
    return jax.lax.map(prob, corners, batch_size=batch_size)


def _positions(n: int, patch: int, stride: int) -> np.ndarray:
    pos = list(range(0, max(n - patch, 0) + 1, stride))
    if pos[-1] != max(n - patch, 0):
        pos.append(n - patch)
    return np.asarray(pos, np.int32)


def occlusion(model, variables, x, class_index=None, *, patch: int | None = None, stride: int | None = None,
              fill: float = 0.0, batch_size: int = 64) -> Occlusion:
    """Occlusion sensitivity (Zeiler & Fergus 2014) of one image ``x`` ``(H, W, C)``: a ``patch`` x
    ``patch`` square of value ``fill`` (0: the dataset mean, "grey") slides with ``stride`` over the
    image (the last row/column of positions touches the far edge); the drop of the class probability
    ``p_c(x) - p_c(occluded)`` is mapped. All occluded copies are one jit-compiled ``lax.map`` over
    chunks of ``batch_size`` (each chunk one batched forward pass). Defaults: patch = side / 7
    (at least 1), stride = patch / 2."""
    x = _batch(x)
    if x.shape[0] != 1:
        raise ValueError(f"occlusion takes one image, got a batch of {x.shape[0]}")
    h, w = x.shape[1:3]
    patch = int(patch or max(1, round(min(h, w) / 7)))
    stride = int(stride or max(1, patch // 2))
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"patch={patch}: must be between 1 and the image side {min(h, w)}")
    _, probs = predict(model, variables, x)
    c = int(np.argmax(probs[0])) if class_index is None else int(class_index)
    rows, cols = _positions(h, patch, stride), _positions(w, patch, stride)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    p = _occluded_probabilities(model, variables, x[0], jnp.int32(c), jnp.asarray(corners), jnp.float32(fill),
                                patch, int(batch_size))
    drops = float(probs[0, c]) - np.asarray(p, np.float64)
    # input-size map: mean drop over the patches covering each pixel
    ry = (np.arange(h)[None, :] >= corners[:, :1]) & (np.arange(h)[None, :] < corners[:, :1] + patch)   # (N, H)
    rx = (np.arange(w)[None, :] >= corners[:, 1:]) & (np.arange(w)[None, :] < corners[:, 1:] + patch)   # (N, W)
    total = np.einsum("n,nh,nw->hw", drops, ry.astype(np.float64), rx.astype(np.float64))
    count = np.einsum("nh,nw->hw", ry.astype(np.float64), rx.astype(np.float64))
    return Occlusion(map=(total / np.maximum(count, 1)).astype(np.float32),
                     drops=drops.reshape(len(rows), len(cols)).astype(np.float32), probability=float(probs[0, c]),
                     class_index=c, rows=rows, cols=cols, patch=patch)


# ----------------------------------------------------------------------------- class model visualisation

@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _ascend(model, variables, c, learning_rate, l2, image0, steps, normalize):
    def objective(img):
        s = model.apply(variables, img[None], train=False)[0, c].astype(jnp.float32)
        return s - l2 * jnp.sum(jnp.square(img)), s

    def step(img, _):
        (_, s), g = jax.value_and_grad(objective, has_aux=True)(img)
        if normalize:
            g = g / (jnp.sqrt(jnp.mean(jnp.square(g))) + 1e-12)
        return img + learning_rate * g, s

    img, scores = jax.lax.scan(step, image0, None, length=steps)
    return img, jnp.concatenate([scores, objective(img)[1][None]])


def class_model(model, variables, class_index: int, *, input_shape=None, steps: int = 100,
                learning_rate: float = 0.1, l2: float = 1e-2, normalize: bool = True,
                init=None) -> tuple[np.ndarray, np.ndarray]:
    """Class model visualisation (Simonyan et al. 2014, sec. 2): the image maximising
    ``S_c(I) - l2 * ||I||^2`` by gradient ascent from the zero image (the dataset mean after
    normalisation). Each step moves ``I`` by ``learning_rate`` times the gradient of the objective,
    divided by its root-mean-square when ``normalize`` (steps of a fixed size in normalised pixel
    units, whatever the network's gradient scale). Returns ``(image (H, W, C), scores (steps + 1,))``:
    ``S_c`` of each iterate, the starting image first.

    ``init``: another starting image ``(H, W, C)``. (An untrained network whose biases are all zero
    has every pre-activation, hence every ReLU gradient, exactly 0 at the zero image: start it from
    small noise instead.)"""
    shape = tuple(input_shape) if input_shape is not None else _default_input_shape(model)
    image0 = jnp.zeros(shape, jnp.float32) if init is None else jnp.asarray(init, jnp.float32).reshape(shape)
    img, scores = _ascend(model, variables, jnp.int32(class_index), jnp.float32(learning_rate), jnp.float32(l2),
                          image0, int(steps), bool(normalize))
    return np.asarray(img), np.asarray(scores)


# ----------------------------------------------------------------------------- nearest neighbours

@functools.partial(jax.jit, static_argnums=(0, 3))
def _embed(model, variables, x, layer):
    f = features(model, variables, x, [layer])[layer]
    return f.reshape(f.shape[0], -1).astype(jnp.float32)


def embed(model, variables, images, *, layer: str = "pre_logits", batch_size: int = 256) -> np.ndarray:
    """Features ``(N, D)`` (flattened) of ``images`` ``(N, H, W, C)`` at ``layer`` (default the
    penultimate vector ``pre_logits``), in batches of ``batch_size`` (the last one padded)."""
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        n = len(chunk)
        if n < batch_size and len(images) > batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(_embed(model, variables, jnp.asarray(chunk), layer))[:n])
    return np.concatenate(out)


def nearest_neighbours(query, database, k: int = 5, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """``(indices (Q, k), distances (Q, k))`` of the ``k`` rows of ``database`` ``(N, D)`` nearest each
    row of ``query`` ``(Q, D)`` (or ``(D,)``), nearest first. ``metric``: 'euclidean' (L2) or 'cosine'
    (1 - cosine similarity)."""
    q = np.atleast_2d(np.asarray(query, np.float64))
    db = np.asarray(database, np.float64).reshape(len(database), -1)
    q = q.reshape(len(q), -1)
    if metric == "euclidean":
        d = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ db.T + (db * db).sum(1)[None], 0.0))
    elif metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        dn = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
        d = 1.0 - qn @ dn.T
    else:
        raise ValueError(f"metric={metric!r}: allowed values are ('euclidean', 'cosine')")
    k = min(int(k), db.shape[0])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


def neighbours(model, variables, query, images, k: int = 5, *, layer: str = "pre_logits",
               metric: str = "euclidean", embeddings: np.ndarray | None = None) -> dict:
    """The ``k`` images of ``images`` ``(N, H, W, C)`` nearest the query image ``(H, W, C)`` in feature
    space (``layer``, default ``pre_logits``, as Krizhevsky et al. 2012 fig. 4 with the last hidden
    layer) and, for comparison, in pixel space (normalised pixels); both with ``metric`` (default
    'euclidean', as the AlexNet paper). ``embeddings``: precomputed :func:`embed` of ``images``.
    Returns ``{'feature': (indices (k,), distances (k,)), 'pixel': (indices, distances)}``."""
    q = _batch(query)
    if q.shape[0] != 1:
        raise ValueError(f"neighbours takes one query image, got a batch of {q.shape[0]}")
    db = embed(model, variables, images, layer=layer) if embeddings is None else np.asarray(embeddings)
    qf = embed(model, variables, q, layer=layer)
    fi, fd = nearest_neighbours(qf, db, k, metric)
    pi, pd = nearest_neighbours(np.asarray(q).reshape(1, -1), np.asarray(images).reshape(len(images), -1), k, metric)
    return {"feature": (fi[0], fd[0]), "pixel": (pi[0], pd[0])}


# ----------------------------------------------------------------------------- classic fixed filters

FIXED_FILTERS: dict[str, np.ndarray] = {
    # as the notes write them (cross-correlation kernels); *_vertical respond to vertical edges
    "vertical_edge": np.array([[1, 0, -1]] * 3, np.float32),
    "horizontal_edge": np.array([[1, 0, -1]] * 3, np.float32).T.copy(),
    "sobel_vertical": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel_horizontal": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32).T.copy(),
    "prewitt_vertical": np.array([[-1, 0, 1]] * 3, np.float32),
    "prewitt_horizontal": np.array([[-1, 0, 1]] * 3, np.float32).T.copy(),
    "scharr_vertical": np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], np.float32),
    "scharr_horizontal": np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], np.float32).T.copy(),
    "average": np.full((3, 3), 1.0 / 9.0, np.float32),
}


def apply_filter(image, kernel: str | Any, *, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlate a 2-D ``image`` (or each channel of ``(H, W, C)``) with a fixed filter (a name of
    :data:`FIXED_FILTERS` or a 2-D array) through :func:`zoo.layers.conv2d`, the conv code of the models.
    Rows ``100 100 200 200`` with ``'sobel_vertical'`` give 400 everywhere."""
    if isinstance(kernel, str):
        if kernel not in FIXED_FILTERS:
            raise ValueError(f"kernel={kernel!r}: allowed names are {tuple(FIXED_FILTERS)} (or pass an array)")
        kernel = FIXED_FILTERS[kernel]
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        return conv2d(image, kernel, stride, padding)
    if image.ndim == 3:
        return np.stack([conv2d(image[..., i], kernel, stride, padding) for i in range(image.shape[-1])], -1)
    raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")


# ----------------------------------------------------------------------------- plotting

def _plt():
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def _minmax(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_display(x, preprocessing: dict | None = None) -> np.ndarray:
    """A normalised model input ``(H, W, C)`` as a displayable float image in [0, 1] ((H, W) for one
    channel): undone with the ``preprocessing`` dict's mean/std when given, else min-max scaled."""
    x = np.asarray(x, np.float32)
    if x.ndim == 4:
        x = x[0]
    if preprocessing is not None:
        std, mean = (np.asarray(preprocessing[k], np.float32) for k in ("std", "mean"))
        x = np.clip(x * std + mean, 0, 1)
    else:
        x = _minmax(x)
    return x[..., 0] if x.shape[-1] == 1 else x


def _save_figure(fig, path, title: str | None = None) -> Path:
    """Title, tight layout, write the PNG (creating its folder), close; returns the path."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def plot_grid(tiles, path, *, titles: Sequence[str] | None = None, ncols: int | None = None, cmap: str = "gray",
              normalize: str | None = "each", title: str | None = None, tile_inches: float = 1.3) -> Path:
    """One figure of image tiles ``(N, h, w)`` or ``(N, h, w, 3)`` (or a list of such arrays) written to
    ``path`` (PNG). ``normalize``: 'each' (min-max per tile), 'all' (one scale), None (values in [0, 1]).
    Shared by filters, feature maps and neighbours."""
    plt = _plt()
    tiles = [np.asarray(t, np.float32) for t in tiles]
    if normalize == "all":
        lo = min(float(t.min()) for t in tiles)
        hi = max(float(t.max()) for t in tiles)
        tiles = [(t - lo) / (hi - lo) if hi > lo else np.zeros_like(t) for t in tiles]
    elif normalize == "each":
        tiles = [_minmax(t) for t in tiles]
    elif normalize is not None:
        raise ValueError(f"normalize={normalize!r}: allowed values are ('each', 'all', None)")
    n = len(tiles)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    row_inches = tile_inches + (0.25 if titles is not None else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * tile_inches, nrows * row_inches + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            t = tiles[i]
            ax.imshow(np.clip(t, 0, 1), cmap=cmap if t.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None and i < len(titles) and titles[i]:
                ax.set_title(titles[i], fontsize=7)
    return _save_figure(fig, path, title)


def plot_filters(filters: np.ndarray, path, *, title: str | None = None, max_filters: int = 256) -> Path:
    """Grid of first-layer filters ``(N, kh, kw, C)`` (:func:`first_layer_filters`): RGB tiles for 3
    input channels, grey otherwise (channel mean), each min-max scaled (as AlexNet's 96 are shown)."""
    f = np.asarray(filters, np.float32)[:max_filters]
    tiles = f if f.shape[-1] == 3 else f.mean(-1)
    return plot_grid(list(tiles), path, title=title or f"{len(filters)} first-layer filters "
                     f"{f.shape[1]}x{f.shape[2]}x{f.shape[3]}", normalize="each")


def plot_feature_maps(maps: np.ndarray, path, *, title: str | None = None, max_maps: int = 64) -> Path:
    """Grid of the channels of one image's feature maps ``(h, w, C)`` (or ``(1, h, w, C)``), each
    min-max scaled, the first ``max_maps`` channels."""
    m = np.asarray(maps, np.float32)
    if m.ndim == 4:
        m = m[0]
    c = min(m.shape[-1], max_maps)
    return plot_grid([m[..., i] for i in range(c)], path, titles=[str(i) for i in range(c)], cmap="viridis",
                     title=title or f"{m.shape[-1]} maps {m.shape[0]}x{m.shape[1]}"
                     + (f" (first {c})" if c < m.shape[-1] else ""))


def plot_attribution(image: np.ndarray, heatmap: np.ndarray, path, *, title: str = "", cmap: str = "jet",
                     symmetric: bool = False) -> Path:
    """Three panels: the input (display image from :func:`to_display`), the map (saliency, Grad-CAM,
    occlusion; ``symmetric``: a diverging scale centred on 0), and the map over the input."""
    plt = _plt()
    img = np.asarray(image, np.float32)
    hm = np.asarray(heatmap, np.float32)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax in axes:
        ax.axis("off")
    gray = "gray" if img.ndim == 2 else None
    axes[0].imshow(img, cmap=gray, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    if symmetric:
        lim = float(np.abs(hm).max()) or 1.0
        im = axes[1].imshow(hm, cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        im = axes[1].imshow(hm, cmap=cmap)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[1].set_title("map", fontsize=8)
    axes[2].imshow(img, cmap=gray, vmin=0, vmax=1)
    axes[2].imshow(np.abs(hm) if symmetric else hm, cmap=cmap, alpha=0.5)
    axes[2].set_title("overlay", fontsize=8)
    return _save_figure(fig, path, title)


def plot_class_model(image: np.ndarray, scores: np.ndarray, path, *, title: str = "") -> Path:
    """The class-model image (min-max scaled) beside its score history."""
    plt = _plt()
    img = _minmax(np.asarray(image, np.float32))
    img = img[..., 0] if img.shape[-1] == 1 else img
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.3))
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].axis("off")
    axes[0].set_title("class model (min-max scaled)", fontsize=8)
    axes[1].plot(np.asarray(scores))
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("class score S_c (logit)")
    return _save_figure(fig, path, title)


def plot_neighbours(query_image: np.ndarray, images: np.ndarray, result: dict, path, *,
                    labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Two rows: the query and its feature-space neighbours, then the query and its pixel-space
    neighbours (:func:`neighbours`); ``images``: display images ``(N, h, w[, 3])`` in [0, 1] (or a mapping
    from the neighbours' indices to them); ``labels``: a name per image of ``images``."""
    tiles, titles = [], []
    for space in ("feature", "pixel"):
        idx, dist = result[space]
        tiles.append(query_image)
        titles.append(f"query ({space})")
        for i, d in zip(idx, dist):
            tiles.append(images[int(i)])
            titles.append((f"{labels[int(i)]} " if labels is not None else "") + f"d={d:.3g}")
    return plot_grid(tiles, path, titles=titles, ncols=len(result["feature"][0]) + 1, normalize=None,
                     title=title or "nearest neighbours: feature space (top), pixel space (bottom)")


def plot_fixed_filters(image: np.ndarray, path, names: Sequence[str] | None = None, *, padding: int = 1) -> Path:
    """The 2-D ``image`` and its responses to the classic fixed filters (:func:`apply_filter`)."""
    names = list(names or FIXED_FILTERS)
    img = np.asarray(image, np.float32)
    tiles = [img] + [apply_filter(img, n, padding=padding) for n in names]
    return plot_grid(tiles, path, titles=["image"] + names, ncols=min(len(tiles), 5), normalize="each",
                     tile_inches=1.8, title="classic fixed filters (cross-correlation, zoo.layers.conv2d)")
