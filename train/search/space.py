"""The search space: ``--space 'path=dist'`` strings parsed into :class:`Param` s, checked against the
config, and turned into Optuna distributions and trial configs.

    space = parse(["optimizer.learning_rate=loguniform(1e-4, 1e-1)", "optimizer.name=choice(sgd, adam)"],
                  config, method="random")
    space.distributions()          # {path: optuna distribution}: what Optuna samples
    trial_config = space.apply(config, {"optimizer.learning_rate": 3e-3, "optimizer.name": "adam"})

Distributions: ``uniform(a, b)``, ``loguniform(a, b)`` (``0 < a < b``), ``int(a, b)`` (integers
``a..b``), ``choice(v1, v2, ...)`` (numbers, true / false, none, or words), and for grids
``grid(a, b, n)`` / ``loggrid(a, b, n)`` (n values evenly spaced, linearly or in log). A grid search
takes ``choice`` / ``grid`` / ``loggrid`` only; random and TPE take all of them (a grid form is a
choice among its values). Any config field can be searched; ``model_kwargs.NAME`` is any argument
of the model's constructor. Every value a distribution can give is checked before anything runs:
its bounds (and each choice) must make a valid config (:func:`check_config`).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any

import ml_collections
import numpy as np

KINDS = ("uniform", "loguniform", "int", "choice", "grid", "loggrid")
GRID_KINDS = ("choice", "grid", "loggrid")
_SPEC = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$", re.S)


class SpaceError(ValueError):
    """A ``--space`` entry that cannot be searched (the message names it and what is allowed)."""


@dataclasses.dataclass(frozen=True)
class Param:
    path: str       # config path: 'optimizer.learning_rate', 'model_kwargs.dropout'
    kind: str       # one of KINDS
    args: tuple     # (a, b) | (a, b, n) | the choices
    text: str       # the entry as given, for messages

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "loggrid")

    @property
    def values(self) -> tuple | None:
        """Every value of a choice or grid form (None for a continuous or integer range)."""
        if self.kind == "choice":
            return self.args
        if self.kind in ("grid", "loggrid"):
            a, b, n = self.args
            points = np.geomspace(a, b, n) if self.log else np.linspace(a, b, n)
            return tuple(float(v) for v in points)
        return None

    def extremes(self) -> tuple:
        """The values every trial value lies between (or among): checked against the config."""
        return self.values if self.values is not None else self.args[:2]

    def distribution(self):
        import optuna  # noqa: PLC0415

        if self.values is not None:
            return optuna.distributions.CategoricalDistribution(self.values)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(*self.args)
        return optuna.distributions.FloatDistribution(*self.args, log=self.log)


@dataclasses.dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.params)

    def __getitem__(self, path: str) -> Param:
        return next(p for p in self.params if p.path == path)

    def distributions(self) -> dict:
        return {p.path: p.distribution() for p in self.params}

    def grid(self) -> dict[str, tuple]:
        """``{path: values}`` of a grid search (every parameter a choice or grid form)."""
        return {p.path: p.values for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params)

    def texts(self) -> list[str]:
        """Canonical ``path=kind(args)`` strings (a study's identity: another space is another search)."""
        return [f"{p.path}={p.kind}({', '.join(map(repr, p.args))})" for p in self.params]

    def apply(self, config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
        """A copy of ``config`` with ``values`` (``{path: value}``) set."""
        c = config.copy_and_resolve_references()
        c.unlock()
        for path, value in values.items():
            _set(c, path, value)
        return c


# ----------------------------------------------------------------------------- parsing

def parse(entries, config: ml_collections.ConfigDict, method: str = "random", fixed=()) -> Space:
    """``entries``: ``'path=dist'`` strings, or a ``{path: 'dist'}`` dict; ``fixed``: the paths set by
    ``--config.FIELD=VALUE``, which a trial's value would silently replace. SpaceError on bad input."""
    if isinstance(entries, dict):
        entries = [f"{k}={v}" for k, v in entries.items()]
    if isinstance(entries, str):
        entries = [entries]
    if not entries:
        raise SpaceError("--space: nothing to search; give at least one 'path=dist', e.g. "
                         "--space 'optimizer.learning_rate=loguniform(1e-4, 1e-1)'")
    params = []
    for text in entries:
        p = _parse_one(text)
        if p.path in [q.path for q in params]:
            raise SpaceError(f"--space {text!r}: {p.path} is searched twice")
        if p.path in fixed:
            raise SpaceError(f"--space {text!r}: {p.path} is also fixed by --config.{p.path}=...; search it "
                             f"or fix it, not both")
        if method == "grid" and p.kind not in GRID_KINDS:
            raise SpaceError(f"--space {text!r}: a grid search takes {', '.join(GRID_KINDS)} (e.g. "
                             f"{p.path}=grid(a, b, n)), got {p.kind}")
        params.append(_typed(p, config))
    space = Space(tuple(params))
    first = {p.path: p.extremes()[0] for p in space.params}
    try:
        check_config(space.apply(config, first))
    except (ValueError, TypeError) as e:
        p = space.params[0]
        if len(space.params) == 1 and _allows_another(config, space, p):
            raise SpaceError(f"--space {p.text!r}: the value {first[p.path]!r} is not allowed: {e}") from None
        raise ValueError(f"--config: {e}") from None
    for p in space.params:
        for value in p.extremes()[1:]:
            try:
                check_config(space.apply(config, {**first, p.path: value}))
            except (ValueError, TypeError) as e:
                raise SpaceError(f"--space {p.text!r}: the value {value!r} is not allowed: {e}") from None
        _refuse_unread(space, config, p)
    return space


def _refuse_unread(space: Space, config, p: Param) -> None:
    """A searched optimizer / schedule field that no possible ``optimizer.name`` / ``schedule.name`` reads
    (momentum with adam): every trial would train the same run."""
    from train.optim import fields_read  # noqa: PLC0415

    section, _, field = p.path.partition(".")
    if section not in ("optimizer", "schedule") or field == "name":
        return
    name = f"{section}.name"
    names = space[name].values if name in space.paths else (config[section].name,)
    if not any(field in fields_read(section, n) for n in names):
        which = names[0] if len(names) == 1 else names
        raise SpaceError(f"--space {p.text!r}: {p.path} is not read by {name}={which!r} (it reads "
                         f"{', '.join(fields_read(section, names[0]))}): every trial would train the same run")


def _allows_another(config, space: Space, p: Param) -> bool:
    """True when the config alone, or with another of ``p``'s extremes, passes ``check_config``: the space's
    entry is to blame, not the config (a warmup longer than the run fails with every value)."""
    for candidate in (config, *(space.apply(config, {p.path: v}) for v in p.extremes()[1:])):
        try:
            check_config(candidate)
            return True
        except (ValueError, TypeError):
            pass
    return False


def _parse_one(text: str) -> Param:
    m = _SPEC.match(text) if isinstance(text, str) else None
    if not m:
        raise SpaceError(f"--space {text!r}: expected 'path=dist' with dist one of uniform(a, b), loguniform(a, b), "
                         f"int(a, b), choice(v1, v2, ...), grid(a, b, n), loggrid(a, b, n)")
    path, kind, body = m.groups()
    if kind not in KINDS:
        raise SpaceError(f"--space {text!r}: unknown distribution {kind!r}; allowed: {', '.join(KINDS)}")
    args = tuple(_value(a.strip()) for a in body.split(",")) if body.strip() else ()

    def need(cond, must):
        if not cond:
            raise SpaceError(f"--space {text!r}: {kind} {must}")

    numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if kind == "choice":
        need(len(args) >= 1, "needs at least one value")
        need(len(set(map(repr, args))) == len(args), "has a value twice")
        return Param(path, kind, args, text)
    if kind in ("grid", "loggrid"):
        need(len(args) == 3 and numbers, "takes three numbers: (low, high, count)")
        need(isinstance(args[2], int) and args[2] >= 2, f"count must be an integer >= 2, got {args[2]!r}")
    else:
        need(len(args) == 2 and numbers, "takes two numbers: (low, high)")
    low, high = args[0], args[1]
    need(math.isfinite(low) and math.isfinite(high), f"needs finite bounds, got {low!r} and {high!r}")
    need(low < high, f"needs low < high, got {low!r} and {high!r}")
    if kind in ("loguniform", "loggrid"):
        need(low > 0, f"needs bounds > 0 (a log scale), got {low!r}")
    if kind == "int":
        need(all(isinstance(a, int) for a in args), "takes two integers")
        return Param(path, kind, args, text)
    return Param(path, kind, (float(low), float(high), *args[2:]), text)


def _value(token: str) -> Any:
    """A value as written: int, float, bool (true / false), None (none), or a word (quotes optional)."""
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


# ----------------------------------------------------------------------------- the config

def _lookup(config: ml_collections.ConfigDict, path: str):
    """``(parent ConfigDict, key)`` of a config path; ``model_kwargs.NAME`` may be new."""
    parts = path.split(".")
    node = config
    for i, key in enumerate(parts[:-1]):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            raise KeyError(".".join(parts[: i + 1]))
        node = node[key]
    if not isinstance(node, ml_collections.ConfigDict):
        raise KeyError(path)
    if parts[-1] not in node and path != f"model_kwargs.{parts[-1]}":
        raise KeyError(path)
    return node, parts[-1]


def _fields(config, prefix="") -> list[str]:
    out = []
    for k, v in config.items():
        out += _fields(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [f"{prefix}{k}"]
    return out


def _typed(p: Param, config) -> Param:
    """``p`` with its values of the config field's type (SpaceError: unknown field, wrong type)."""
    try:
        node, key = _lookup(config, p.path)
    except KeyError:
        close = difflib.get_close_matches(p.path, _fields(config), n=2, cutoff=0.85)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see configs/default.py for every field"
        raise SpaceError(f"--space {p.text!r}: unknown config field {p.path}{hint}") from None
    if key not in node:
        return p  # a new model_kwargs argument: the model checks it
    kind = node.get_type(key)
    if isinstance(node[key], ml_collections.ConfigDict) or kind in (tuple, list, dict):
        raise SpaceError(f"--space {p.text!r}: {p.path} is a {kind.__name__} field; only numbers, booleans and "
                         f"strings can be searched")
    if kind is int and p.kind in ("uniform", "loguniform", "grid", "loggrid"):
        raise SpaceError(f"--space {p.text!r}: {p.path} is an integer field; use int(a, b) or choice(...)")
    if p.kind == "choice":
        values = tuple(_cast(v, kind, p) for v in p.args)
        if len(set(map(repr, values))) != len(values):   # choice(1, 1.0) of a float field: 1.0 twice
            raise SpaceError(f"--space {p.text!r}: choice has a value twice (as {kind.__name__}s: {values})")
        return dataclasses.replace(p, args=values)
    return p


def _cast(value, kind, p: Param):
    if value is None or kind is type(None) or isinstance(value, kind):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    raise SpaceError(f"--space {p.text!r}: {p.path} takes a {kind.__name__}, got {value!r}")


def _set(config, path: str, value) -> None:
    node, key = _lookup(config, path)
    if key in node and node.get_type(key) is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    node[key] = value


def check_config(config) -> None:
    """The checks a run makes on ``config`` before touching any data (ValueError naming the field):
    optimizer and schedule (with the run's length at 100 steps per epoch), loss, and the model's
    constructor arguments."""
    import zoo  # noqa: PLC0415
    from train import logs, optim, setup, step  # noqa: PLC0415

    setup.check_length(config)
    setup.check_intervals(config)   # before the session divides by eval_every_epochs
    steps = max(1, int(math.ceil(config.num_epochs * 100))) if config.num_train_steps <= 0 else config.num_train_steps
    with logs.quiet("train"):   # its warnings (unread fields, decays after the end): the runs' to give, once each
        optim.make_optimizer(config, steps_per_epoch=100, total_steps=steps)
    step.StepConfig(loss=config.loss, label_smoothing=config.label_smoothing, ema_decay=config.optimizer.ema_decay)
    kwargs = setup.model_kwargs(config, config.model_kwargs.get("num_classes", 10))
    zoo.create(config.model, **kwargs)
