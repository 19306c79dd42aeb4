"""``python -m zoo [PATTERN]``: the model table (name, family, parameters, MACs, input size, published
weights) as markdown, for the registered models whose name matches the shell-style PATTERN ('resnet*';
default: all). The weights column lists the tags of the weight catalogue without their ``IMAGENET1K_``
prefix, ``*`` marking DEFAULT.

Parameters and MACs are counted from the models themselves (``jax.eval_shape`` at the default input,
nothing computed) once, by ``python -m zoo --update-counts``, into ``zoo/model_counts.json``; the
table reads them from there (a test checks the file against fresh counts). A model the file does not
list yet is counted on the spot.
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
    """``{name: (parameters, MACs)}`` from ``zoo/model_counts.json`` (empty if it is missing)."""
    if not COUNTS.is_file():
        return {}
    return {name: (int(c["params"]), int(c["macs"])) for name, c in json.loads(COUNTS.read_text()).items()}


def table_row(name: str, params: int, macs: int) -> str:
    """One markdown row of the table."""
    info = zoo.model_info(name)
    h, w, c = info.input_shape
    return f"| `{name}` | {info.family} | {params:,} | {macs / 1e6:,.2f} | {h}x{w}x{c} | {weights_cell(name)} |"


def model_table(pattern: str | None = None) -> str:
    counts = stored_counts()
    return "\n".join(HEADER + [table_row(n, *(counts.get(n) or count(n))) for n in zoo.list_models(pattern)])


def update_counts() -> Path:
    """Count every registered model afresh and write ``zoo/model_counts.json``."""
    counts = {n: dict(zip(("params", "macs"), count(n))) for n in zoo.list_models()}
    COUNTS.write_text(json.dumps(counts, indent=1) + "\n")
    return COUNTS


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m zoo", __doc__, epilog="examples:\n  python -m zoo\n  python -m zoo 'resnet*'\n\n"
                   "in Python: zoo.list_models(pattern), zoo.model_info(name), zoo.summary(model, shape)")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern over the names ('resnet*')")
    p.add_argument("--update-counts", action="store_true", help=f"recount every model into {COUNTS.name} (developers)")
    args = p.parse_args(argv)
    if args.update_counts:
        print(f"wrote {update_counts()}")
        return 0
    if not zoo.list_models(args.pattern):
        return cli.fail(f"no model name matches {args.pattern!r}; python -m zoo lists them all")
    print(model_table(args.pattern))
    return 0


if __name__ == "__main__":
    sys.exit(main())
