"""``python -m train.inspect --workdir runs/lenet5 --image digit.png``: pictures of what a trained
network has learned and why it decides as it does, written as PNGs next to the checkpoint
(``WORKDIR/inspect`` by default); the paths are printed.

    python -m train.inspect --workdir runs/lenet5 --image digit.png \\
        [--what filters,features,saliency,gradcam,occlusion,classmodel,neighbours,rf,fixed] \\
        [--layer s2,c3] [--class 7] [--out DIR] [--checkpoint best|latest|STEP]
    python -m train.inspect --workdir runs/lenet5 --index 12      # image 12 of the run's eval split
    # a digit.png to try --image with: test image 12 of mnist5k (the quickstart's eval split)
    python -c "from train import data; from PIL import Image; Image.fromarray(data.open_source('mnist5k', 'test', \\
        image_shape=(28, 28, 1)).images[12, ..., 0]).save('digit.png')"

The image (any file PIL reads) is preprocessed with ``train.data.preprocess_eval`` and the
preprocessing stored with the checkpoint, exactly as evaluation does. ``--class`` (index or class
name) defaults to the predicted class. ``--what`` defaults to everything that applies:

  filters     first-layer filters as a grid                        filters.png
  features    feature maps of ``--layer`` (default: the first and last spatial taps)
                                                                   <image>_features_<layer>.png
  saliency    |dS_c/dI| (Simonyan et al. 2014)                     <image>_saliency_<class>.png
  gradcam     Grad-CAM at ``--layer`` taps (default: the last spatial tap)
                                                                   <image>_gradcam_<layer>_<class>.png
  occlusion   drop of p_c under a sliding patch of the mean colour (``--patch``, ``--stride``)
                                                                   <image>_occlusion_<class>.png
  classmodel  the input maximising S_c - lambda ||I||^2            class_model_<class>.png
  neighbours  nearest eval-split images in pre_logits space and in pixel space
                                                                   <image>_neighbours.png
  rf          receptive field of every layer (printed)             receptive_fields.txt
  fixed       the classic fixed filters (Sobel, Prewitt, Scharr, average) on the image
                                                                   <image>_fixed_filters.png

``--patch`` / ``--stride`` (occlusion), ``--steps`` (classmodel), ``--k`` / ``--neighbours_max``
(neighbours) and ``--layer`` (features, gradcam) are refused when ``--what`` does not ask for their
analysis; every option is checked before any folder or picture is written.

The library behind it is ``zoo.inspect``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

WHAT = ("filters", "features", "saliency", "gradcam", "occlusion", "classmodel", "neighbours", "rf", "fixed")
# the options that serve one analysis only: (flag, analysis, default when not given, least value)
OPTIONS = (("--patch", "occlusion", None, 1), ("--stride", "occlusion", None, 1), ("--steps", "classmodel", 100, 0),
           ("--k", "neighbours", 8, 1), ("--neighbours_max", "neighbours", 1000, 1))


def load_image(path: str | Path) -> np.ndarray:
    """Any image file PIL reads as uint8 ``(h, w)``, ``(h, w, 3)`` or ``(h, w, 4)``; one ValueError line
    naming ``--image`` otherwise."""
    from PIL import Image  # noqa: PLC0415

    from train.data.decode import blocks_on_open, grey_or_rgb  # noqa: PLC0415

    if blocks_on_open(path):
        raise ValueError(f"--image {path}: not a regular file")
    try:
        with Image.open(path) as im:
            if im.mode in ("LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            elif im.mode.startswith("I") or im.mode == "F":   # 16-bit grey scaled to 8 bits; float refused
                return grey_or_rgb(im)
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGB")
            return np.asarray(im, np.uint8).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
        raise ValueError(f"--image {path}: not a readable image ({getattr(e, 'strerror', None) or e})") from None


def _eval_images(meta: dict, limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Up to ``limit`` images (normalised) and labels of the run's eval split, in order."""
    from train import setup  # noqa: PLC0415

    pipe = setup.checkpoint_pipeline(meta, batch_size=min(int(meta["config"]["eval_batch_size"]), max(limit, 1)))
    images, labels = [], []
    n = 0
    for b in pipe:
        keep = b["mask"] > 0
        images.append(b["image"][keep])
        labels.append(b["label"][keep])
        n += int(keep.sum())
        if n >= limit:
            break
    return np.concatenate(images)[:limit], np.concatenate(labels)[:limit], list(pipe.class_names)


def _class_index(arg: str | None, names: list[str]) -> int | None:
    if arg is None:
        return None
    if arg in names:
        return names.index(arg)
    try:
        c = int(arg)
    except ValueError:
        raise ValueError(f"--class {arg!r}: not a class index or one of the class names {names[:20]}") from None
    if not 0 <= c < len(names):
        raise ValueError(f"--class {c}: must be in [0, {len(names)})")
    return c


def _check_options(what: list[str], given: dict) -> None:
    """Each option given (not None) must serve an analysis ``what`` asks for, as ``--layer`` must, and
    be an integer of at least its least value: one ValueError line naming the flag, before any work."""
    for flag, user, _, least in OPTIONS:
        value = given[flag]
        if value is None:
            continue
        if user not in what:
            raise ValueError(f"{flag} {value}: only {user} takes it, and --what asks for {','.join(what)}")
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"{flag}={value!r}: must be an integer >= {least}")


def run(workdir, *, image=None, index: int | None = None, what=None, layers=None, class_arg=None, out=None,
        checkpoint_step="best", k: int | None = None, neighbours_max: int | None = None, steps: int | None = None,
        patch=None, stride=None, print_fn=print) -> dict[str, list[Path]]:
    """The command as a function: returns ``{what: [written paths]}``. ``what``: None for every analysis;
    ``k`` (default 8), ``neighbours_max`` (1000), ``steps`` (100), ``patch`` and ``stride`` (occlusion's
    defaults): None when not given; given for an analysis ``what`` does not ask for, they are refused."""
    from train import data, evaluation  # noqa: PLC0415
    from zoo import inspect as zi  # noqa: PLC0415
    from zoo.features import features  # noqa: PLC0415
    from zoo.files import safe_name  # noqa: PLC0415

    if what is not None and not list(what):
        raise ValueError(f"--what: no analysis named; name one or more of {', '.join(WHAT)} (default: all)")
    what = list(dict.fromkeys(what or WHAT))   # each analysis once
    unknown = [w for w in what if w not in WHAT]
    if unknown:
        raise ValueError(f"--what: unknown {unknown}; allowed: {', '.join(WHAT)}")
    if layers and not {"features", "gradcam"} & set(what):
        raise ValueError(f"--layer {','.join(layers)}: only features and gradcam take layers, and --what asks for "
                         f"{','.join(what)}")
    given = {"--patch": patch, "--stride": stride, "--steps": steps, "--k": k, "--neighbours_max": neighbours_max}
    _check_options(what, given)
    patch, stride, steps, k, neighbours_max = (given[flag] if given[flag] is not None else default
                                               for flag, _, default, _ in OPTIONS)
    out = evaluation.output_folder(out, "--out", Path(workdir) / "inspect", "--out")
    model, variables, meta, _ = evaluation.load(workdir, checkpoint_step)
    pp = meta["preprocessing"]
    shape = (*pp["image_size"], pp["channels"])
    if patch is not None and patch > min(shape[:2]):
        raise ValueError(f"--patch={patch}: must be between 1 and the image side {min(shape[:2])}")

    dataset = None
    if image is not None:
        x = data.preprocess_eval(load_image(image), pp)
        stem = safe_name(Path(image).stem)
    else:
        dataset = _eval_images(meta, max(neighbours_max, (index or 0) + 1))
        if not 0 <= (index or 0) < len(dataset[0]):
            raise ValueError(f"--index {index}: the eval split has {len(dataset[0])} images")
        x = dataset[0][index or 0][None]
        stem = f"{meta['config']['data']['eval_split']}{index or 0}"
    names = list(meta.get("class_names") or [str(i) for i in range(model.num_classes)])
    pred, probs = zi.predict(model, variables, x)
    c = _class_index(class_arg, names)
    c = int(pred[0]) if c is None else c
    cname = names[c]
    # every attribution figure says which class it explains and what the network predicted
    explained = f"class {cname} (p={probs[0, c]:.3f}); predicted {names[int(pred[0])]} (p={probs[0, pred[0]]:.3f})"
    print_fn(f"{meta['model']}: predicted {names[int(pred[0])]} (p={probs[0, pred[0]]:.3f}); "
             f"explaining class {cname} (p={probs[0, c]:.3f})")
    shown = zi.to_display(x[0], pp)
    taps = zi.spatial_taps(model, shape)
    if layers and {"features", "gradcam"} & set(what):
        try:  # one forward pass: a typo is refused before any picture is written
            outputs = features(model, variables, x, layers)
        except ValueError as e:
            raise ValueError(f"--layer: {str(e).removeprefix('layers: ')}") from None
        flat = [n for n, v in outputs.items() if np.ndim(v) != 4]
        if flat and "features" in what:
            raise ValueError(f"--layer: {flat[0]!r} is not a spatial feature map (its output has shape "
                             f"{np.shape(outputs[flat[0]])}), which features draws")
    written: dict[str, list[Path]] = {}

    def wrote(kind, path):
        written.setdefault(kind, []).append(Path(path))
        print_fn(f"{kind}: {path}")

    def skip(kind, why):
        print_fn(f"{kind}: skipped ({why})")

    def target(name: str) -> Path:
        """``out / name``, refused when it is the ``--image`` file (a figure once replaced it)."""
        path = out / name
        if image is not None and path.exists() and os.path.samefile(path, image):
            raise ValueError(f"--out {out}: {name} would be written over the --image file {image}; "
                             f"choose another --out")
        return path

    out.mkdir(parents=True, exist_ok=True)  # after every check: a refused command leaves no folder
    for w in what:
        if w == "filters":
            try:
                f = zi.first_layer_filters(model, variables, shape)
            except ValueError as e:
                skip(w, e)
                continue
            wrote(w, zi.plot_filters(f, target("filters.png"), title=f"{meta['model']}: {len(f)} first-layer filters "
                                     f"{f.shape[1]}x{f.shape[2]}x{f.shape[3]}"))
        elif w == "features":
            chosen = layers or (list(dict.fromkeys([taps[0], taps[-1]])) if taps else [])
            if not chosen:
                skip(w, "no spatial feature tap")
            for layer in chosen:
                maps = zi.feature_maps(model, variables, x, layer)
                wrote(w, zi.plot_feature_maps(maps[0], target(f"{stem}_features_{safe_name(layer)}.png"),
                                              title=f"{meta['model']} {layer}: {maps.shape[-1]} maps "
                                                    f"{maps.shape[1]}x{maps.shape[2]}"))
        elif w == "saliency":
            s = zi.saliency(model, variables, x, c)[0]
            wrote(w, zi.plot_attribution(shown, s, target(f"{stem}_saliency_{safe_name(cname)}.png"),
                                         title=f"saliency |dS_c/dI| of {explained}"))
        elif w == "gradcam":
            # module paths and non-spatial taps serve features only: Grad-CAM names what it leaves out
            named = [n for n in (layers or []) if n in taps]
            chosen = named or ([zi.default_cam_layer(model, shape)] if taps else [])
            left_out = [n for n in (layers or []) if n not in taps]
            if left_out:
                instead = "skipped" if named or not chosen else f"using {chosen[0]}"
                print_fn(f"gradcam: --layer {','.join(left_out)}: not a spatial feature tap (taps: {', '.join(taps)}); "
                         f"{instead}")
            if not chosen:
                skip(w, "no spatial feature tap")
            for layer in chosen:
                g = zi.grad_cam(model, variables, x, c, layer)[0]
                name = f"{stem}_gradcam_{safe_name(layer)}_{safe_name(cname)}.png"
                wrote(w, zi.plot_attribution(shown, g, target(name), title=f"Grad-CAM at {layer} of {explained}"))
        elif w == "occlusion":
            o = zi.occlusion(model, variables, x[0], c, patch=patch, stride=stride)
            wrote(w, zi.plot_attribution(shown, o.map, target(f"{stem}_occlusion_{safe_name(cname)}.png"),
                                         symmetric=True, title=f"occlusion: mean drop of p({cname}) under the "
                                                               f"{o.patch}x{o.patch} patches of the mean colour "
                                                               f"covering each pixel; {explained}"))
        elif w == "classmodel":
            img, scores = zi.class_model(model, variables, c, input_shape=shape, steps=steps)
            wrote(w, zi.plot_class_model(img, scores, target(f"class_model_{safe_name(cname)}.png"),
                                         title=f"class model of {cname}: S_c {scores[0]:.2f} -> {scores[-1]:.2f}"))
        elif w == "neighbours":
            try:
                if dataset is None:
                    dataset = _eval_images(meta, neighbours_max)
            except Exception as e:  # noqa: BLE001  (dataset not available here)
                skip(w, f"the eval split cannot be loaded: {str(e).splitlines()[0][:200]}")
                continue
            images, labels, _ = dataset
            r = zi.neighbours(model, variables, x[0], images, k=k)
            shown_k = len(r["feature"][0])   # k, or every image searched when there are fewer
            needed = {int(i) for space in r.values() for i in space[0]}
            disp = {i: zi.to_display(images[i], pp) for i in needed}
            wrote(w, zi.plot_neighbours(shown, disp, r, target(f"{stem}_neighbours.png"),
                                        labels=[names[int(v)] for v in labels],
                                        title=f"{shown_k} nearest of {len(images)} eval images: pre_logits (top), "
                                              "pixels (bottom), L2"))
        elif w == "rf":
            table = zi.receptive_field_table(zi.receptive_fields(model, shape, variables=variables))
            path = target("receptive_fields.txt")
            path.write_text(table + "\n")
            print_fn(table)
            wrote(w, path)
        elif w == "fixed":
            gray = shown if shown.ndim == 2 else shown @ np.asarray([0.299, 0.587, 0.114], np.float32)
            wrote(w, zi.plot_fixed_filters(gray, target(f"{stem}_fixed_filters.png")))
    return written


def main(argv=None) -> int:
    from zoo import cli  # noqa: PLC0415

    ap = cli.parser("python -m train.inspect", __doc__, epilog="examples:\n" + "\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--workdir", required=True, help="the run's directory (checkpoints inside)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image file to explain (any format PIL reads)")
    src.add_argument("--index", type=int, help="explain image INDEX of the run's eval split instead")
    ap.add_argument("--what", default="all", help=f"comma list of {','.join(WHAT)} (default: all)")
    ap.add_argument("--layer", default=None, help="comma list of feature taps or module paths for features and "
                    "Grad-CAM (default: first/last spatial taps; Grad-CAM: the last)")
    ap.add_argument("--class", dest="class_", metavar="CLASS", default=None, help="class index or name (default: predicted)")
    ap.add_argument("--out", default=None, help="output folder (default WORKDIR/inspect)")
    ap.add_argument("--checkpoint", default="best", help="'best' (default), 'latest' or a step number")
    # None when not given: an option given for an analysis --what does not ask for is refused (run)
    ap.add_argument("--k", type=int, default=None, help="neighbours shown (default 8)")
    ap.add_argument("--neighbours_max", type=int, default=None, help="eval images searched (default 1000)")
    ap.add_argument("--steps", type=int, default=None, help="class-model gradient-ascent steps (default 100)")
    ap.add_argument("--patch", type=int, default=None, help="occlusion patch side (default: image side / 7)")
    ap.add_argument("--stride", type=int, default=None, help="occlusion stride (default: patch / 2)")
    a = ap.parse_args(argv)
    from train import checkpoint, logs, overrides  # noqa: PLC0415

    logs.for_command()
    what = None if a.what == "all" else [w.strip() for w in a.what.split(",") if w.strip()]
    layers = [n.strip() for n in a.layer.split(",") if n.strip()] if a.layer else None
    try:
        overrides.check_workdir(a.workdir)
        run(a.workdir, image=a.image, index=a.index, what=what, layers=layers, class_arg=a.class_, out=a.out,
            checkpoint_step=a.checkpoint, k=a.k, neighbours_max=a.neighbours_max, steps=a.steps, patch=a.patch,
            stride=a.stride)
    except (checkpoint.NoCheckpointError, ValueError, OSError) as e:
        return cli.fail(e)
    return 0


if __name__ == "__main__":
    from zoo import cli

    sys.exit(cli.run(main))
