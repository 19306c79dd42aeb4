"""Receptive-field rules, one per JAX primitive that moves spatial axes (:data:`RULES`), for the
jaxpr walk of :mod:`zoo.inspect.receptive_fields`. A field along one input dimension is a :class:`Dim`
(held by an array axis, or pooled away); a rule maps the fields of an equation's inputs to those of
its outputs. Primitives without a rule are elementwise (checked from their shapes) or unknown.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dim:
    """Receptive field of a value along one input dimension: held by array ``axis`` (None: pooled away)."""

    axis: int | None
    size: float
    jump: float
    start: float
    n: int

    def collapse(self) -> "Dim":
        """Field of a unit that sees every unit along the axis (global pooling, flatten + dense)."""
        if self.axis is None:
            return self
        return Dim(None, self.size + (self.n - 1) * self.jump, 0.0, self.start + (self.n - 1) * self.jump / 2, 1)

    def moved(self, axis: int | None, n: int | None = None) -> "Dim":
        return dataclasses.replace(self, axis=axis, n=self.n if n is None else n)

    def window(self, axis_out: int, n_out: int, k: int, s: int, pad_lo: int, dil: int = 1, base_dil: int = 1) -> "Dim":
        """The r / j / start recursion: r' = r + (k-1) d j, j' = j s, start' = start + ((k-1)/2 d - p) j."""
        j = self.jump / base_dil
        return Dim(axis_out, self.size + (k - 1) * dil * j, j * s, self.start + ((k - 1) / 2 * dil - pad_lo) * j,
                   n_out)


State = tuple  # (rows Dim, cols Dim) or None (value independent of the input)


def combine(states: Sequence) -> State | None:
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


def map_dims(state, fn) -> State | None:
    return None if state is None else tuple(fn(d) for d in state)


def _on_axis(fn) -> Callable[[Dim], Dim]:
    """``fn`` applied to dimensions still held by an axis; pooled-away dimensions pass unchanged."""
    return lambda d: d if d.axis is None else fn(d)


class Eqn(NamedTuple):
    """What a rule sees of one equation: input fields ``ins`` (None: independent of the input), shapes."""

    name: str
    params: dict
    ins: list
    in_shapes: list
    out_shapes: list
    scope: str
    here: int           # index of the equation in the walk
    walker: Any         # records pooling ops: add_pool(here, scope, kind, state, shape)

    @property
    def out_shape(self) -> tuple:
        return self.out_shapes[0]


# ----------------------------------------------------------------------------- the rules

def _conv(e: Eqn) -> list:
    p, kernel, out_shape = e.params, e.in_shapes[1], e.out_shape
    dn = p["dimension_numbers"]
    lhs_sp, rhs_sp, out_sp = dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:]

    def conv(d):
        if d.axis not in lhs_sp:
            return d.collapse()
        i = lhs_sp.index(d.axis)
        return d.window(out_sp[i], out_shape[out_sp[i]], kernel[rhs_sp[i]], p["window_strides"][i],
                        p["padding"][i][0], p["rhs_dilation"][i], p["lhs_dilation"][i])
    return [combine([map_dims(e.ins[0], _on_axis(conv)), map_dims(e.ins[1], Dim.collapse)])]


_POOL_KIND = {"reduce_window_max": "max_pool", "reduce_window_sum": "avg_pool", "reduce_window_min": "min_pool",
              "reduce_window": "pool"}


def _pool(e: Eqn) -> list:
    p, out_shape = e.params, e.out_shape
    k_, s_, pad = p["window_dimensions"], p["window_strides"], p["padding"]
    wd, bd = p.get("window_dilation") or (1,) * len(k_), p.get("base_dilation") or (1,) * len(k_)
    n_ops = len(e.out_shapes)
    windowed = []

    def pool(d):
        a = d.axis
        if k_[a] == 1 and s_[a] == 1 and tuple(pad[a]) == (0, 0) and bd[a] == 1:
            return d
        windowed.append(a)
        return d.window(a, out_shape[a], k_[a], s_[a], pad[a][0], wd[a], bd[a])
    out = combine([map_dims(s, _on_axis(pool)) for s in e.ins[:n_ops]])
    if windowed and out is not None:
        e.walker.add_pool(e.here, e.scope, _POOL_KIND[e.name], out, out_shape)
    return [out] * n_ops


def _reduce(e: Eqn) -> list:
    axes = tuple(e.params["axes"] if "axes" in e.params else e.params["dimensions"])

    def red(d):
        return d.collapse() if d.axis in axes else d.moved(d.axis - sum(a < d.axis for a in axes))
    return [combine([map_dims(s, _on_axis(red)) for s in e.ins[:len(e.out_shapes)]])] * len(e.out_shapes)


def _reshape_dim(d: Dim, in_shape, out_shape) -> Dim:
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
            return Dim(outer, d.size + (m - 1) * d.jump, d.jump * m, d.start + (m - 1) * d.jump / 2, out_shape[outer])
    return d.collapse()  # merged with other axes (flatten)


def _reshape(e: Eqn) -> list:
    return [map_dims(e.ins[0], lambda d: _reshape_dim(d, e.in_shapes[0], e.out_shape))]


def _transpose(e: Eqn) -> list:
    perm = list(e.params["permutation"])
    return [map_dims(e.ins[0], _on_axis(lambda d: d.moved(perm.index(d.axis))))]


def _squeeze(e: Eqn) -> list:
    dims = tuple(a % len(e.in_shapes[0]) for a in e.params["dimensions"])
    return [map_dims(e.ins[0], _on_axis(lambda d: d.collapse() if d.axis in dims
                                         else d.moved(d.axis - sum(a < d.axis for a in dims))))]


def _broadcast_in_dim(e: Eqn) -> list:
    bdims, in_shape, out_shape = e.params["broadcast_dimensions"], e.in_shapes[0], e.out_shape

    def bcast(d):
        b = bdims[d.axis]
        if in_shape[d.axis] == 1 and out_shape[b] > 1:
            return Dim(b, d.size, 0.0, d.start, out_shape[b])
        return d.moved(b)
    return [map_dims(e.ins[0], _on_axis(bcast))]


def _concatenate(e: Eqn) -> list:
    dim = e.params["dimension"]
    return [map_dims(combine(e.ins), lambda d: d.moved(d.axis, e.out_shape[dim]) if d.axis == dim else d)]


def _slice(e: Eqn) -> list:
    out_shape = e.out_shape
    starts, strides = e.params["start_indices"], e.params["strides"] or (1,) * len(out_shape)
    return [map_dims(e.ins[0], _on_axis(lambda d: Dim(d.axis, d.size, d.jump * strides[d.axis],
                                                       d.start + starts[d.axis] * d.jump, out_shape[d.axis])))]


def _pad(e: Eqn) -> list:
    cfg = e.params["padding_config"]

    def padded(d):
        lo, _, interior = cfg[d.axis]
        j = d.jump / (interior + 1)
        return Dim(d.axis, d.size, j, d.start - lo * j, e.out_shape[d.axis])
    return [combine([map_dims(e.ins[0], _on_axis(padded)), e.ins[1]])]


def _split(e: Eqn) -> list:
    axis, sizes = e.params["axis"], e.params["sizes"]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [map_dims(e.ins[0], lambda d, o=int(o), n=int(n): d if d.axis != axis else Dim(
        d.axis, d.size, d.jump, d.start + o * d.jump, n)) for o, n in zip(offsets, sizes)]


def _dot_general(e: Eqn) -> list:
    (lc, rc), (lb, rb) = e.params["dimension_numbers"]
    lfree = [a for a in range(len(e.in_shapes[0])) if a not in lc and a not in lb]
    rfree = [a for a in range(len(e.in_shapes[1])) if a not in rc and a not in rb]

    def side(contract, batch, free, offset):
        def f(d):
            if d.axis in contract:
                return d.collapse()
            if d.axis in batch:
                return d.moved(list(batch).index(d.axis))
            return d.moved(offset + free.index(d.axis))
        return _on_axis(f)
    return [combine([map_dims(e.ins[0], side(lc, lb, lfree, len(lb))),
                      map_dims(e.ins[1], side(rc, rb, rfree, len(lb) + len(lfree)))])]


def _gather(e: Eqn) -> list:
    dn, sizes, in_shape = e.params["dimension_numbers"], e.params["slice_sizes"], e.in_shapes[0]
    skipped = set(dn.collapsed_slice_dims) | set(getattr(dn, "operand_batching_dims", ()))
    kept = [a for a in range(len(in_shape)) if a not in skipped]

    def gat(d):
        a = d.axis
        if a in kept and a not in dn.start_index_map and sizes[a] == in_shape[a]:
            return d.moved(dn.offset_dims[kept.index(a)])
        return d.collapse()
    return [combine([map_dims(e.ins[0], _on_axis(gat)), map_dims(e.ins[1], Dim.collapse)])]


_REDUCE = ("reduce", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or",
           "reduce_xor", "argmax", "argmin")

# JAX primitive name -> rule. Primitives not listed are elementwise (checked from their shapes) or unknown.
RULES: dict[str, Callable[[Eqn], list]] = {
    "conv_general_dilated": _conv, **dict.fromkeys(_POOL_KIND, _pool), **dict.fromkeys(_REDUCE, _reduce),
    "reshape": _reshape, "transpose": _transpose, "squeeze": _squeeze, "broadcast_in_dim": _broadcast_in_dim,
    "concatenate": _concatenate, "slice": _slice, "pad": _pad, "split": _split, "dot_general": _dot_general,
    "gather": _gather,
}


def _fits(shape, out_shape) -> bool:
    """``shape`` is ``out_shape`` up to size-1 axes."""
    return len(shape) == len(out_shape) and all(a in (1, b) for a, b in zip(shape, out_shape))


def elementwise(e: Eqn) -> list | None:
    """Elementwise ops with lax's implicit broadcasting of size-1 axes (those units all see one field);
    None when the shapes say the primitive is not elementwise: an output of another shape, or an
    operand that does not fit the output (only scalars may, when they do not depend on the input;
    a convolution's kernel never fits, even where the convolution keeps the map's size)."""
    out_shape = e.out_shape
    live = [(s, sh) for s, sh in zip(e.ins, e.in_shapes) if s is not None]
    if not (all(o == out_shape for o in e.out_shapes)
            and all(_fits(sh, out_shape) or (s is None and sh == ()) for s, sh in zip(e.ins, e.in_shapes))):
        return None

    def bcast(d, sh):
        if d.axis is None or sh[d.axis] == out_shape[d.axis]:
            return d
        return Dim(d.axis, d.size, 0.0, d.start, out_shape[d.axis])
    return [combine([map_dims(s, lambda d, sh=sh: bcast(d, sh)) for s, sh in live])] * len(e.out_shapes)
