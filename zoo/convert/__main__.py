"""Convert and check torchvision weight files for zoo models.

    python -m zoo.convert pth2safetensors resnet18 resnet18-f37072fd.pth resnet18.safetensors   # no torch needed
    python -m zoo.convert check resnet18 resnet18.safetensors
"""
from __future__ import annotations

import sys

import jax
import numpy as np

from zoo import cli
from zoo.compiling import use_compile_cache
from zoo.convert.files import check_safetensors_name, load_state_dict, save_torchvision
from zoo.convert.layout import from_torchvision


def main(argv=None) -> int:
    p = cli.parser("python -m zoo.convert", __doc__.split("\n")[0], epilog="examples:\n" + __doc__.split("\n", 1)[1].strip("\n")
                   + "\n\nin Python: zoo.load_pretrained(name, file=...), zoo.convert.from_torchvision(name, state_dict)")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pth2safetensors", help="torchvision .pth (read without torch) -> checked .safetensors")
    a.add_argument("model")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("--overwrite", action="store_true", help="replace an existing dst")
    c = sub.add_parser("check", help="check that a weight file converts to a zoo model")
    c.add_argument("model")
    c.add_argument("src")
    args = p.parse_args(argv)
    use_compile_cache()
    try:
        if args.cmd == "pth2safetensors":
            check_safetensors_name(args.dst, "dst")   # before the source is read and converted
            cli.keep_existing(args.dst, "dst", args.overwrite)
        sd = load_state_dict(args.src)
        variables = from_torchvision(args.model, sd)
        n = sum(int(np.size(v)) for v in jax.tree.leaves(variables.get("params", {})))
        if args.cmd == "pth2safetensors":
            save_torchvision(args.model, variables, args.dst, overwrite=args.overwrite)
            print(f"{args.dst}: {args.model}, {n:,} parameters (torchvision names and layouts)")
        else:
            print(f"{args.src}: converts to {args.model} ({n:,} parameters)")
    except (ValueError, ImportError, OSError) as e:
        return cli.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
