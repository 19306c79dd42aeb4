"""``python -m zoo [PATTERN]``: the model table (name, family, parameters, MACs, input size) as
markdown, computed from the registry (parameters and MACs counted exactly with jax.eval_shape)."""
import sys

import zoo
from zoo.summary import layer_table


HEADER = ["| model | family | params | MMACs | input |", "|---|---|---:|---:|---|"]


def table_row(name: str, layers) -> str:
    """One markdown row from a variant's ``layer_table`` at its default input."""
    info = zoo.model_info(name)
    params, macs = sum(r.params for r in layers), sum(r.macs for r in layers)
    h, w, c = info.input_shape
    return f"| `{name}` | {info.family} | {params:,} | {macs / 1e6:,.2f} | {h}x{w}x{c} |"


def model_table(pattern: str | None = None) -> str:
    return "\n".join(HEADER + [table_row(n, layer_table(zoo.create(n), zoo.model_info(n).input_shape))
                               for n in zoo.list_models(pattern)])


if __name__ == "__main__":
    print(model_table(sys.argv[1] if len(sys.argv) > 1 else None))
