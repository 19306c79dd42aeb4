"""Receptive fields from the architecture: the forward pass is traced to a jaxpr and the r / jump /
start recursion is applied at every convolution and pooling primitive (a table of rules, one per
primitive that moves spatial axes; elementwise ops take the largest field of their inputs).

    rf = receptive_fields(zoo.create("vgg16"))
    rf["block1_conv2"].size, rf["max_pool5"].size, rf["max_pool5"].jump   # (5, 5) (212, 212) (32, 32)

A primitive that moves spatial axes and has no rule in ``zoo.inspect.field_rules.RULES`` is treated as
global (every input position reaches every output) and named in a warning: add a rule for it there.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from zoo.inspect.field_rules import RULES, Dim, Eqn, combine, elementwise, map_dims
from zoo.inspect.inputs import check_variables
from zoo.summary import abstract_variables


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


# ----------------------------------------------------------------------------- the walk

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
    """Propagates receptive fields through a jaxpr with the rules of ``field_rules.RULES``; records
    pooling ops and the primitives it could not explain (``unknown``)."""

    def __init__(self):
        self.order: dict[Any, int] = {}   # var -> index of the equation that produced it
        self.pools: list[tuple[int, str, Any, tuple]] = []   # (index, name, state, shape)
        self.pool_count: dict[tuple[str, str], int] = {}
        self.unknown: set[str] = set()
        self.counter = 0

    def add_pool(self, here: int, scope: str, kind: str, state, shape) -> None:
        key = (scope, kind)
        self.pool_count[key] = self.pool_count.get(key, 0) + 1
        name = f"{kind}{self.pool_count[key]}"
        self.pools.append((here, f"{scope}/{name}" if scope else name, state, shape))

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
                outs = self.run(inner, ins, eqn_scope) if inner is not None else self.rule(eqn, ins, eqn_scope, here)
            for v, s in zip(eqn.outvars, outs):
                env[v] = s
                self.order.setdefault(v, here)
        return [read(v) for v in jaxpr.outvars]

    def rule(self, eqn, ins, scope, here):
        e = Eqn(eqn.primitive.name, eqn.params, ins, [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars],
                [tuple(v.aval.shape) for v in eqn.outvars], scope, here, self)
        rule = RULES.get(e.name)
        if rule is not None:
            return rule(e)
        outs = elementwise(e)
        if outs is not None:
            return outs
        # unknown: everything seen by the inputs, pooled
        self.unknown.add(e.name)
        return [combine([map_dims(s, Dim.collapse) for s in ins if s is not None])] * len(e.out_shapes)


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
    them, e.g. ``features_transition1/avg_pool1``). ``input_shape`` ``(H, W, C)``: default
    ``model.example_input_shape()`` (fields of spatial layers do not depend on it; only the pooled
    unions do). A zoo model is traced with ``conv_impl='lax'`` (one conv primitive per convolution).
    ``variables``: the model's own (default: its shapes, from ``init``); another model's are refused.
    """
    shape = tuple(input_shape) if input_shape is not None else model.example_input_shape()
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    if variables is None:
        v = abstract_variables(model, shape)
    else:
        check_variables(model, variables, shape)   # another model's variables would fail inside the trace
        v = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), variables)
    collections = ["features"] + (["intermediates"] if modules else [])
    lax_model = model.clone(conv_impl="lax") if hasattr(model, "conv_impl") else model

    def forward(v, x):
        return lax_model.apply(v, x, train=False, mutable=collections, capture_intermediates=modules)

    closed, out_shapes = jax.make_jaxpr(forward, return_shape=True)(v, x)
    jaxpr = closed.jaxpr
    x_state = (Dim(1, 1.0, 1.0, 0.0, shape[0]), Dim(2, 1.0, 1.0, 0.0, shape[1]))
    walker = _Walker()
    out_states = walker.run(jaxpr, [None] * (len(jaxpr.invars) - 1) + [x_state])
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
