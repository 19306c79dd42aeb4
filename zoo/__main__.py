"""``python -m zoo [PATTERN]``: the model table (name, family, parameters, MACs, input size, published
weights) as markdown, for the registered models whose name matches the shell-style PATTERN ('resnet*';
default: all). The weights column lists the tags of the weight catalogue without their ``IMAGENET1K_``
prefix, ``*`` marking DEFAULT.

Parameters and MACs are counted from the models themselves (``jax.eval_shape`` at the default input,
nothing computed) once, by ``python -m zoo --update-counts``, into ``zoo/model_counts.json``; the
table reads them from there (a test checks the file against fresh counts). A model the file does not
list yet is counted on the spot; a damaged file is one error line naming it. With a PATTERN,
``--update-counts`` recounts only the models it matches and keeps the others' counts.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import zoo
from zoo import cli

HEADER = ["| model | family | params | MMACs | input | weights |", "|---|---|---:|---:|---|---|"]
COUNTS = Path(__file__).with_name("model_counts.json")


def weights_cell(name: str) -> str:
    """``V1, V2*``: the model's weight tags, DEFAULT starred; ``-`` when it has none."""
    tags = [e.tag.removeprefix("IMAGENET1K_") + ("*" if e.default else "") for e in zoo.model_info(name).weights]
    return ", ".join(tags) or "-"


def count(name: str) -> tuple[int, int]:
    """``(parameters, MACs)`` of a variant at its default input, counted from the model."""
    from zoo.summary import layer_table  # noqa: PLC0415

    layers = layer_table(zoo.create(name), zoo.model_info(name).input_shape)
    return sum(r.params for r in layers), sum(r.macs for r in layers)


def stored_counts() -> dict[str, tuple[int, int]]:
    """``{name: (parameters, MACs)}`` from ``zoo/model_counts.json`` (empty if it is missing); a
    damaged file is one ValueError line naming it."""
    if not COUNTS.is_file():
        return {}
    try:
        return {name: (int(c["params"]), int(c["macs"])) for name, c in json.loads(COUNTS.read_text()).items()}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{COUNTS}: damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}); "
                         f"python -m zoo --update-counts writes it again") from None


def table_row(name: str, params: int, macs: int) -> str:
    """One markdown row of the table."""
    info = zoo.model_info(name)
    h, w, c = info.input_shape
    return f"| `{name}` | {info.family} | {params:,} | {macs / 1e6:,.2f} | {h}x{w}x{c} | {weights_cell(name)} |"


def model_table(pattern: str | None = None) -> str:
    counts = stored_counts()
    return "\n".join(HEADER + [table_row(n, *(counts.get(n) or count(n))) for n in zoo.list_models(pattern)])


def update_counts(pattern: str | None = None) -> Path:
    """Count the registered models matching ``pattern`` (None: all) afresh into ``zoo/model_counts.json``,
    keeping the stored counts of the others."""
    kept = stored_counts() if pattern is not None else {}
    counts = {n: dict(zip(("params", "macs"), kept[n])) for n in kept if n in zoo.list_models()}
    counts.update({n: dict(zip(("params", "macs"), count(n))) for n in zoo.list_models(pattern)})
    COUNTS.write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
    return COUNTS


def no_match(pattern: str | None) -> str | None:
    """Why ``pattern`` selects nothing (an empty one, or no name matches, with the closest names when it
    has no wildcard); None when it selects a model."""
    if pattern is not None and not pattern.strip():
        return f"pattern {pattern!r}: empty; give a name or a shell-style pattern ('resnet*'), or none for all models"
    if zoo.list_models(pattern):
        return None
    close = zoo.registry.closest_names(pattern) if not set("*?[") & set(pattern) else []
    hint = f"closest: {', '.join(close)}; " if close else ""
    return f"no model name matches {pattern!r}; {hint}python -m zoo lists them all"


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m zoo", __doc__, epilog="examples:\n  python -m zoo\n  python -m zoo 'resnet*'\n\n"
                   "in Python: zoo.list_models(pattern), zoo.model_info(name), zoo.summary(model, shape)")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern over the names ('resnet*')")
    p.add_argument("--update-counts", action="store_true",
                   help=f"recount the models PATTERN matches (default: every model) into {COUNTS.name} (developers)")
    args = p.parse_args(argv)
    if (why := no_match(args.pattern)) is not None:
        return cli.fail(why)
    try:
        if args.update_counts:
            print(f"wrote {update_counts(args.pattern)}")
        else:
            print(model_table(args.pattern))
    except ValueError as e:   # a damaged counts file: not a usage error
        return cli.fail(e, status=1)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
