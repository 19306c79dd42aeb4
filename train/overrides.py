"""A config file and its command-line overrides, as ``python -m train`` reads them:

    --config configs/resnet20_cifar10.py --config.optimizer.learning_rate=0.05 --config.batch_size 256

Every field and its default is in ``configs/default.py`` (the one list); a field that is not there is
an error naming it and the closest field names (:class:`UnknownFieldError`), and a value is parsed as
the field's type: ``true``/``false`` for booleans, numbers, ``none`` for optional fields (those
``configs/default.py`` declares with a None default, even when the config file set them), ``30,60`` or
``(30, 60)`` for tuples. ``model_kwargs`` takes any constructor argument of the model
(``--config.model_kwargs.small_input=true``; Python literals, else a string). The config is locked
afterwards, as ml_collections' ``config_flags`` did.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import ml_collections

FREE_FORM = ("model_kwargs",)   # ConfigDicts that take any key
_PREFIX = "--config."


class UnknownFieldError(ValueError):
    """An override names a field that the config does not have."""


def load(spec: str) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``spec`` (``path.py``, or ``path.py:ARG`` for ``get_config(ARG)``)."""
    path, _, arg = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"--config {spec}: no such file (configs are in configs/, e.g. configs/lenet5_mnist5k.py)")
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  (the user's file: one line naming it)
        raise ValueError(f"--config {spec}: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"--config {spec}: {file} defines no get_config()")
    takes_arg = bool(inspect.signature(get_config).parameters)
    if arg and not takes_arg:
        raise ValueError(f"--config {spec}: the get_config() of {file} takes no argument (drop ':{arg}')")
    try:
        return get_config(arg) if takes_arg else get_config()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"--config {spec}: get_config() raised {type(e).__name__}: {e}") from e


def split(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``argv`` without its ``--config.FIELD=VALUE`` / ``--config.FIELD VALUE`` overrides, and them."""
    rest, found, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith(_PREFIX):
            name, eq, value = a[len(_PREFIX):].partition("=")
            if not eq:   # the value is the next token, unless that is another option (-1 is a value)
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise ValueError(f"--config.{name}: no value given (--config.{name}=VALUE)")
                value, i = argv[i + 1], i + 1
            found.append((name, value))
        else:
            rest.append(a)
        i += 1
    return rest, found


def check_workdir(workdir: str, argument: str = "--workdir") -> None:
    """A command's run directory names a folder: ``--workdir ''`` (or blanks) would be the current
    directory (``Path('')`` is ``.``), where the run's files would land unasked. One ValueError line."""
    if not str(workdir).strip():
        raise ValueError(f"{argument} {workdir!r}: empty; name a folder (e.g. runs/lenet5)")


def read_command_line(parser, argv: list[str] | None, stop, *, on_args=None):
    """``(args, config, None)`` of a command taking ``--config FILE[:ARG]`` and ``--config.FIELD=VALUE``
    (``python -m train``, ``python -m train.search``), or ``(args, None, exit status)`` after one
    ``error:`` line (bad input; a config file may raise anything) or a signal (``stop``:
    ``train.interrupts.install()``). An empty ``--workdir`` is refused (:func:`check_workdir`).
    ``on_args(args)`` runs before the config file is read."""
    from train import interrupts  # noqa: PLC0415  (light)
    from zoo import cli  # noqa: PLC0415

    try:
        rest, fields = split(list(sys.argv[1:] if argv is None else argv))
    except ValueError as e:
        return None, None, cli.fail(e)
    args = parser.parse_args(rest)
    try:
        check_workdir(getattr(args, "workdir", "."))
    except ValueError as e:
        return args, None, cli.fail(e)
    if on_args is not None:
        on_args(args)
    try:
        config = apply(load(args.config), fields)
        stop.check()
    except interrupts.Interrupted as e:
        print(e, file=sys.stderr, flush=True)
        return args, None, e.exit_code
    except Exception as e:  # noqa: BLE001  (a config file can raise anything: one line, it is the user's input)
        return args, None, cli.fail(e)
    return args, config, None


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every field's dotted name (``optimizer.learning_rate``)."""
    out = []
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict) and key not in FREE_FORM:
            out += field_names(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def apply(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> ml_collections.ConfigDict:
    """Set each ``(dotted field name, text)`` on ``config``, then lock it; returns it."""
    for name, text in overrides:
        parent, key = _parent(config, name)
        with config.unlocked():
            try:
                if key in parent:
                    parent[key] = parse(text, parent[key], parent.get_type(key), f"--config.{name}",
                                        optional=name in optional_fields())
                else:
                    parent[key] = _literal(text)
            except (TypeError, ValueError) as e:
                raise ValueError(str(e).splitlines()[0]) from None
    config.lock()
    return config


def _parent(config, name: str):
    *path, key = name.split(".")
    node = config
    for i, part in enumerate(path):
        if not (isinstance(node, ml_collections.ConfigDict) and part in node
                and isinstance(node[part], ml_collections.ConfigDict)):
            raise _unknown(config, name)
        if part in FREE_FORM and i == len(path) - 1:
            return node[part], key
        node = node[part]
    if not path and key in FREE_FORM:
        raise ValueError(f"--config.{name}: set its fields one by one (--config.{name}.ARG=VALUE)")
    if key in node and isinstance(node[key], ml_collections.ConfigDict):
        raise UnknownFieldError(f"config field {name!r} is a group: set its fields, "
                                f"{', '.join(field_names(node[key], name + '.')[:4])}, ... (configs/default.py)")
    if key not in node:
        raise _unknown(config, name)
    return node, key


def _unknown(config, name: str) -> UnknownFieldError:
    names = field_names(config)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    close += [n for n in names if n.split(".")[-1] == name.split(".")[-1] and n not in close]
    if not close:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.0)
    return UnknownFieldError(f"unknown config field {name!r}; closest: {', '.join(close[:4])} "
                             f"(every field and its default: configs/default.py)")


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@functools.cache
def optional_fields() -> frozenset[str]:
    """The fields ``configs/default.py`` declares optional: a None default
    (``FieldReference(None, field_type=...)``), which ``none`` unsets whatever a config file set."""
    from configs import default  # noqa: PLC0415

    config = default.get_config()

    def value(name: str):
        return functools.reduce(lambda node, key: node[key], name.split("."), config)

    return frozenset(n for n in field_names(config) if value(n) is None)


def parse(text: str, current: Any, field_type: type, what: str, *, optional: bool = False) -> Any:
    """``text`` as a value of the field's type (``current``: its value, ``field_type``: its type);
    ``none`` / ``null`` unset a field that is None now or ``optional`` (:func:`optional_fields`)."""
    t = text.strip()
    if (current is None or optional) and t.lower() in ("none", "null"):   # an optional field unset
        return None
    try:
        if field_type is bool:
            if t.lower() not in _TRUE + _FALSE:
                raise ValueError
            return t.lower() in _TRUE
        if field_type is int:
            return int(t)
        if field_type is float:
            return float(t)
        if field_type in (tuple, list):   # Python literals: numbers, or quoted strings
            value = ast.literal_eval(t if t.startswith(("(", "[")) else f"({t},)" if t else "()")
            return field_type(value if isinstance(value, (tuple, list)) else (value,))
    except (ValueError, SyntaxError):
        kind = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "a comma-separated list of numbers (or quoted strings)",
                list: "a comma-separated list of numbers (or quoted strings)"}.get(field_type, field_type.__name__)
        raise ValueError(f"{what}={text!r}: expected {kind}") from None
    return text


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def described(names: list[str], config: ml_collections.ConfigDict) -> str:
    """``--config.NAME=DEFAULT  comment`` for ``names``, the comments read from configs/default.py."""
    from configs import default  # noqa: PLC0415

    source = Path(default.__file__).read_text()
    rows = []
    for name in names:
        match = re.search(rf"^\s*c\.{re.escape(name)} = .*?#\s*(.*)$", source, flags=re.M)
        parent, key = _parent(config, name)
        value = parent[key]
        rows.append((f"--config.{name}={value!r}" if isinstance(value, str) else f"--config.{name}={value}",
                     match.group(1) if match else ""))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"  {a.ljust(width)}  {b}".rstrip() for a, b in rows)
