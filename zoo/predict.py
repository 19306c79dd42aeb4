"""``python -m zoo.predict --model resnet50 [--weights TAG | --file PATH | --workdir RUN] IMAGE [IMAGE ...]``:
the top classes of each image with their probabilities.

    python -m zoo.predict --model resnet50 cat.jpg dog.png          # torchvision's DEFAULT weights
    python -m zoo.predict --workdir runs/flowers --topk 3 --json rose.jpg

Published weights name ImageNet's classes; a run names its own (stored with its checkpoints). Each
image is preprocessed as the weights expect (``zoo.bundle``: the catalogue entry's resize / crop /
interpolation, or the run's evaluation preprocessing), then softmax over the logits.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from zoo import bundle, cli, convs
from zoo.compiling import gc_paused, step_compile_options

BATCH = 16


def read_image(path) -> np.ndarray:
    """uint8 ``(h, w)`` or ``(h, w, 3)`` pixels of an image file; ValueError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    from train.data.decode import blocks_on_open, grey_or_rgb  # noqa: PLC0415  (the training loader's decoding: 16-bit scaled)

    if blocks_on_open(path):
        raise ValueError(f"{path}: not a regular file")
    try:
        with Image.open(path) as im:
            im.load()
            return grey_or_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def top_classes(b: bundle.Bundle, images, k: int = 5) -> list[list[dict]]:
    """For each uint8 image: its ``k`` most probable classes, ``[{'class', 'index', 'probability'}]``."""
    if k < 1:
        raise ValueError(f"topk={k}: a positive number of classes")
    k = min(k, len(b.class_names))
    # log-probabilities order the classes even where probabilities underflow to 0
    apply = jax.jit(gc_paused()(lambda v, x: jax.nn.log_softmax(b.model.apply(v, x, train=False).astype(np.float32),
                                                                 axis=-1)),
                    compiler_options=step_compile_options(jax.default_backend()))
    out = []
    for start in range(0, len(images), BATCH):
        log_probs = np.asarray(apply(b.variables, b.preprocess(list(images[start:start + BATCH]))))
        for lp in log_probs:
            best = np.argsort(-lp, kind="stable")[:k]
            out.append([{"class": b.class_names[i], "index": int(i), "probability": float(np.exp(lp[i]))}
                        for i in best])
    return out


def main(argv=None) -> int:
    p = cli.parser("python -m zoo.predict", __doc__, epilog=(
        "examples:\n  python -m zoo.predict --model resnet50 cat.jpg dog.png          # DEFAULT weights\n"
        "  python -m zoo.predict --model resnet50 --weights IMAGENET1K_V1 --topk 3 --json cat.jpg\n"
        "  python -m zoo.predict --workdir runs/flowers rose.jpg           # a run: its class names\n\n"
        "weight tags: zoo.model_info(NAME).weights; cache: $ZOO_CACHE (~/.cache/cnn-zoo), mirror: $ZOO_WEIGHTS_MIRROR"))
    bundle.add_arguments(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout instead of text")
    args = p.parse_args(argv)
    try:
        images = [read_image(path) for path in args.images]
        b = bundle.from_args(args, conv_impl=convs.conv_impl_for(jax.devices()[0].platform))
        results = top_classes(b, images, args.topk)
    except (ValueError, FileNotFoundError, OSError) as e:
        return cli.fail(e)
    if args.topk > len(b.class_names):
        print(f"note: --topk {args.topk}: the model has {len(b.class_names)} classes; all are shown", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": b.description, "predictions": [{"image": str(path), "top": r} for path, r in
                                                                  zip(args.images, results)]}, indent=1))
        return 0
    for path, r in zip(args.images, results):
        print(f"{Path(path).name} ({b.description})")
        for c in r:
            print(f"  {100 * c['probability']:6.2f}%  {c['class']} ({c['index']})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
