"""``python -m zoo [PATTERN]``: the model table (name, family, parameters, MACs, input size) as
markdown, computed from the registry (parameters and MACs counted exactly with jax.eval_shape)."""
import sys

import zoo
from zoo.summary import layer_table


def model_table(pattern: str | None = None) -> str:
    rows = ["| model | family | params | GMACs | input |", "|---|---|---:|---:|---|"]
    for name in zoo.list_models(pattern):
        info = zoo.model_info(name)
        model = zoo.create(name)
        table = layer_table(model, info.input_shape)
        params = sum(r.params for r in table)
        macs = zoo.macs(model, info.input_shape)
        h, w, c = info.input_shape
        rows.append(f"| `{name}` | {info.family} | {params:,} | {macs / 1e9:.3f} | {h}x{w}x{c} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(model_table(sys.argv[1] if len(sys.argv) > 1 else None))
