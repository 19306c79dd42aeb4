"""Argument checks shared by every model and layer: each raises one ValueError line naming the argument
and what is allowed (``zoo.create("resnet18", num_classes=0)`` -> ``num_classes=0: must be an integer >= 1``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_positive_int(arg: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{arg}={value!r}: must be an integer >= 1")


def check_nonnegative_int(arg: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{arg}={value!r}: must be an integer >= 0")


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """A finite real number (not a bool, a str, an array, NaN or inf)."""
    return is_number(value) and bool(np.isfinite(value))


def check_positive(arg: str, value) -> None:
    if not is_number(value) or not value > 0:
        raise ValueError(f"{arg}={value!r}: must be a number > 0")


def check_bool(arg: str, value) -> None:
    """``value`` must be True or False (not 0 / 1 / "no": a truthy string would build another network)."""
    if not isinstance(value, bool):
        raise ValueError(f"{arg}={value!r}: must be True or False")


def check_float_dtype(arg: str, value) -> None:
    """``value`` must name a floating dtype (jnp.float32, 'bfloat16', ...)."""
    try:
        ok = jnp.issubdtype(jnp.dtype(value), jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{arg}={value!r}: must be a floating dtype, e.g. jnp.float32, jnp.bfloat16 or 'float16'")


def check_rate(arg: str, value) -> None:
    traced = isinstance(value, jax.Array)  # a search group's per-trial rates (zoo/dropout.py): checked before tracing
    if not traced and (not isinstance(value, (int, float, np.number)) or not 0.0 <= value < 1.0):
        raise ValueError(f"{arg}={value!r}: must be a probability in [0, 1)")


def check_choice(arg: str, value, allowed) -> None:
    """``value`` must be one of ``allowed``; True / False are not taken for 1 / 0."""
    if value not in allowed or (isinstance(value, bool) and not any(a is value for a in allowed)):
        raise ValueError(f"{arg}={value!r}: allowed values are {tuple(allowed)}")


def check_positive_ints(arg: str, values, length: int | None = None) -> None:
    """``values`` must be a tuple or list of integers >= 1: ``length`` of them, or at least one."""
    ok = isinstance(values, (tuple, list)) and (len(values) == length if length else len(values) > 0)
    if not ok or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{arg}={values!r}: must list {length or 'one or more'} integers >= 1")


def check_groups(groups: int, in_channels: int, out_channels: int, where: str = "") -> None:
    check_positive_int("groups", groups)   # (0: a ZeroDivisionError below)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                         f"out_channels={out_channels}{where}")


def check_model_input(model, input_shape) -> tuple[int, int, int]:
    """``model`` must be a model object (not its name) and ``input_shape`` the ``(H, W, C)`` of one
    image; returns the shape as a tuple of ints."""
    if isinstance(model, str):
        raise ValueError(f"model={model!r}: a model object, e.g. zoo.create({model!r}), not its name")
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in input_shape)
    if not ok:
        raise ValueError(f"input_shape={input_shape!r}: (H, W, C) of one image, e.g. (224, 224, 3)")
    return tuple(int(v) for v in input_shape)
