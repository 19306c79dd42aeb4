"""Counting like the lecture notes: parameters and multiply-accumulates layer by layer.

Everything runs under ``jax.eval_shape`` (no compilation, no FLOPs spent): the model is traced
once with an interceptor that records, for every conv and dense layer, its output shape, its
parameters and its MACs, ``H_out * W_out * C_out * k_h * k_w * C_in / groups`` for a conv and
``in * out`` for a dense layer (torchvision's "GFLOPS" column counts these MACs). Norm layers are
listed with their parameters and no MACs, as is any other module that owns parameters (LeNet's
trainable subsampling); pooling, activations and additions are not counted, as in the published
figures. Auxiliary classifiers run at init and are counted (torchvision's train-mode forward), except
where the input is too small for them to run (Inception v3 below 299x299: a module with
``placeholder_input=True`` was given a stand-in map so that its parameters exist): their rows keep their
parameters but no output shape and no MACs, as in torchvision's eval-mode forward, the only one there.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_model_input


@dataclasses.dataclass
class LayerRow:
    path: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


def _num(tree) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


# Flax collections a model's variables hold besides ``params`` (never module names in a params tree).
OTHER_COLLECTIONS = ("batch_stats", "aux_logits", "features", "taps", "intermediates", "cache")


def param_count(variables_or_params) -> int:
    """Trainable parameters: the ``params`` collection of a model's variables (a dict or a Flax ``FrozenDict``),
    or a params tree itself; BN running statistics (``batch_stats``) excluded, as torch's ``sum(p.numel())``."""
    x = variables_or_params
    if not isinstance(x, Mapping):
        raise ValueError(f"variables: a model's variables or params (a dict), got {type(x).__name__}"
                         f"; for a model, zoo.param_count(zoo.init(model, input_shape))")
    if "params" in x:
        return _num(x["params"])
    others = [k for k in x if k in OTHER_COLLECTIONS]
    if others:
        raise ValueError(f"variables: collections {others} without 'params'; pass a model's variables "
                         f"(zoo.init(model, input_shape)) or their 'params'")
    return _num(x)


def abstract_variables(model: nn.Module, input_shape, batch: int = 1):
    """Variables of ``model`` as ShapeDtypeStructs, traced with ``jax.eval_shape`` (no compile).
    ``input_shape`` is ``(H, W, C)`` of one image."""
    x = jax.ShapeDtypeStruct((batch, *check_model_input(model, input_shape)), jnp.float32)
    return jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)


def layer_table(model: nn.Module, input_shape, batch: int = 1) -> list[LayerRow]:
    """One row per parametrised layer (conv, dense, norm, and any other module owning params),
    in call order, for a batch of one image of ``input_shape`` ``(H, W, C)``."""
    return trace(model, input_shape, batch)[0]


def layer_macs(mod: nn.Module, out) -> int:
    """MACs per image of one layer call that gave ``out`` (the rule of the module docstring): a conv or
    dense layer's output positions x its kernel's size (kh * kw * C_in / groups * C_out; in * out); a
    custom layer's own ``macs(out_shape)`` (e.g. LeNet's C3); 0 for anything else."""
    if isinstance(mod, (nn.Conv, nn.Dense)):
        return math.prod(out.shape[1:-1]) * math.prod(mod.variables["params"]["kernel"].shape)
    if hasattr(mod, "macs"):
        return int(mod.macs(out.shape))
    return 0


def trace(model: nn.Module, input_shape, batch: int = 1) -> tuple[list[LayerRow], dict]:
    """``(layer rows, abstract variables)`` from one ``jax.eval_shape`` of ``model.init``."""
    input_shape = check_model_input(model, input_shape)
    rows: list[LayerRow] = []
    stand_ins: list[str] = []  # paths of modules that ran on a placeholder input (no forward pass has them)

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if getattr(mod, "placeholder_input", False) is True:
            stand_ins.append("/".join(mod.path))
        if context.method_name != "__call__" or not isinstance(out, jax.Array | jax.ShapeDtypeStruct | jax.core.Tracer):
            return out
        own = {k: v for k, v in mod.variables.get("params", {}).items() if not isinstance(v, dict)}
        known = isinstance(mod, (nn.Conv, nn.Dense, nn.BatchNorm, nn.GroupNorm, nn.LayerNorm))
        if not known and not own:  # containers (blocks, the model) are listed through their layers
            return out
        rows.append(LayerRow("/".join(mod.path), type(mod).__name__, tuple(out.shape), _num(own), layer_macs(mod, out)))
        return out

    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    with nn.intercept_methods(interceptor):
        variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)
    for r in rows:
        if any(r.path == p or r.path.startswith(p + "/") for p in stand_ins):
            r.output_shape, r.macs = (), 0
    counted = sum(r.params for r in rows)
    total = param_count(variables)
    if counted != total:  # params created by a container module itself, outside any layer
        rows.append(LayerRow("(other parameters)", "-", (), total - counted, 0))
    return rows, variables


def macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates for one image of ``input_shape`` ``(H, W, C)``."""
    return sum(r.macs for r in layer_table(model, input_shape))


def summary(model: nn.Module, input_shape, *, print_fn=print) -> list[LayerRow]:
    """Print (with ``print_fn``; None: not at all) and return the per-layer table: layer, output shape,
    parameters, MACs, with totals.

    ``zoo.summary(zoo.create("lenet5", num_classes=10), (28, 28, 1))``
    """
    if print_fn is not None and not callable(print_fn):
        raise ValueError(f"print_fn={print_fn!r}: a callable taking one string (e.g. print), or None not to print")
    rows = layer_table(model, input_shape)
    w = max([len(r.path) for r in rows] + [10])
    t = max([len(r.kind) for r in rows] + [10])
    lines = [f"{'layer':<{w}}  {'type':<{t}} {'output shape':<16} {'params':>13} {'MACs':>15}",
             "-" * (w + t + 63)]
    for r in rows:
        shape = "x".join(map(str, r.output_shape[1:])) if r.output_shape else ""
        lines.append(f"{r.path:<{w}}  {r.kind:<{t}} {shape:<16} {r.params:>13,} {r.macs:>15,}")
    total_p = sum(r.params for r in rows)
    total_m = sum(r.macs for r in rows)
    lines += ["-" * (w + t + 63), f"{'total':<{w}}  {'':<{t}} {'':<16} {total_p:>13,} {total_m:>15,}"]
    if print_fn is not None:
        print_fn("\n".join(lines))
    return rows


def xla_flops(model: nn.Module, input_shape) -> float:
    """FLOPs of the eval forward pass from XLA's cost analysis of the lowered (not compiled) program:
    an independent cross-check of :func:`macs` (about 2 FLOPs per MAC plus elementwise work)."""
    variables = abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x)
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(np.asarray(cost["flops"]))
