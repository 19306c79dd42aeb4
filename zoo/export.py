"""The eval-mode network out of JAX: serialized StableHLO (``jax.export``) or ONNX (jax2onnx).

    python -m zoo.export --model resnet50 --format onnx --out resnet50.onnx          # DEFAULT weights
    python -m zoo.export --workdir runs/flowers --format stablehlo --out flowers.stablehlo

Both take ``image: float32 (batch, H, W, C)``, NHWC and normalised as the weights expect, with a
dynamic batch dimension, and return ``logits: (batch, classes)``. Next to the artifact, ``OUT.json``
describes the input, the preprocessing (resize / crop / interpolation / mean / std) and the class
names. An existing ``--out`` is never replaced unless ``--overwrite`` is given; files are written
under a temporary name and renamed when complete.

* StableHLO: ``jax.export.export(jax.jit(f))`` with a symbolic batch, weights embedded as constants;
  ``jax.export.deserialize(bytes).call(x)`` runs it again (any JAX >= the exporting version).
* ONNX: jax2onnx (>= 0.13, < 0.14: 0.14 pins orbax-checkpoint < 0.11.37, which conflicts with this
  project's orbax 0.12). The network is first traced to a jaxpr here and that jaxpr is what jax2onnx
  converts, with two window reductions rewritten (:data:`REWRITES`): jax2onnx 0.13 lowers
  ``reduce_window_max`` / ``reduce_window_sum`` over NHWC to 4-D pools that onnxruntime refuses, and
  its flax-level shortcuts (patched ``nn.max_pool``, ``nn.Conv``, ...) reject explicit pool padding.
  A process's first conversion imports only jax2onnx's lax plugins (:func:`_import_lax_plugins`: 1.7
  instead of 15 s for LeNet-5 on 2 cores), all of them should a primitive have no plugin among those.
  Needs the ``export`` extra: ``pip install -e ".[export]"``. The result is checked in onnxruntime
  when it is installed (logits within 1e-4 relative of JAX's).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from zoo.files import check_file_name, check_folder_to_write, written_atomically

FORMATS = ("onnx", "stablehlo")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")   # jax.export's platform names
EXTRA_HINT = 'ONNX export needs the "export" extra: pip install -e ".[export]" (jax2onnx>=0.13,<0.14, onnxruntime)'
RTOL = 1e-4


def logits_fn(model, variables) -> Callable:
    """``x: (B, H, W, C) -> logits`` float32 in eval mode (a bfloat16 run's too, as ``zoo.predict`` and the
    eval step give them), the variables closed over (exported as constants)."""
    return lambda x: model.apply(variables, x, train=False).astype(jnp.float32)


def _spec(input_shape) -> jax.ShapeDtypeStruct:
    batch, = jax.export.symbolic_shape("batch")
    return jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)


def stablehlo(model, variables, input_shape, *, platforms=None) -> bytes:
    """Serialized ``jax.export.Exported`` of the eval-mode network for ``(batch, *input_shape)``."""
    exported = jax.export.export(jax.jit(logits_fn(model, variables)), platforms=platforms)(_spec(input_shape))
    return bytes(exported.serialize())


# ----------------------------------------------------------------------------- ONNX

def _max_pool_nchw(x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation):
    """NHWC max pool as a 3-D pool over ``(B*C, H, W)``: onnxruntime's MaxPool takes <= 3 spatial axes."""
    b, h, w, c = x.shape
    y = jnp.transpose(x, (0, 3, 1, 2)).reshape(-1, h, w)
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, *window_dimensions[1:3]), (1, *window_strides[1:3]),
                              [(0, 0), *padding[1:3]], window_dilation=(1, *window_dilation[1:3]))
    return jnp.transpose(y.reshape(b, c, *y.shape[1:]), (0, 2, 3, 1))


def _sum_pool_depthwise(x, *, window_dimensions, window_strides, padding, base_dilation, window_dilation):
    """NHWC window sum as a depthwise convolution with a kernel of ones."""
    c = x.shape[-1]
    kernel = jnp.ones((*window_dimensions[1:3], 1, c), x.dtype)
    return jax.lax.conv_general_dilated(x, kernel, window_strides[1:3], padding[1:3],
                                        rhs_dilation=window_dilation[1:3],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


REWRITES = {"reduce_window_max": _max_pool_nchw, "reduce_window_sum": _sum_pool_depthwise}
INLINED = ("jit", "pjit", "closed_call", "custom_jvp_call", "custom_vjp_call")


def _spatial_window(x, params) -> bool:
    """A pool over H and W of an NHWC array (the only kind the rewrites handle)."""
    dims, strides = params["window_dimensions"], params["window_strides"]
    return (x.ndim == 4 and dims[0] == dims[3] == strides[0] == strides[3] == 1
            and tuple(params["padding"][0]) == tuple(params["padding"][3]) == (0, 0)
            and set(params["base_dilation"]) == {1})


def _sub_jaxpr(eqn):
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if j is not None:
            return (j.jaxpr, j.consts) if hasattr(j, "consts") else (j, ())
    return None


def _evaluate(jaxpr, consts, *args):
    """Evaluate a jaxpr, calls inlined and :data:`REWRITES` applied (traced by jax2onnx in turn)."""
    from jax.extend import core as jcore  # noqa: PLC0415

    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        sub = _sub_jaxpr(eqn) if name in INLINED else None
        if name in REWRITES and _spatial_window(ins[0], eqn.params):
            outs = [REWRITES[name](*ins, **eqn.params)]
        elif sub is not None:
            outs = _evaluate(sub[0], sub[1], *ins)
        else:
            outs = eqn.primitive.bind(*ins, **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


_plugins_imported = None   # None, "lax" (plugins/jax only) or "all": what jax2onnx has imported in this process


def _import_lax_plugins() -> bool:
    """jax2onnx imports every module under ``jax2onnx/plugins`` on its first conversion, its equinox and
    flax plugins and example models included, some of which build and run networks at import (XLA
    compiles): 13 of the 15 s of a first LeNet-5 export on 2 CPU cores. :func:`onnx` hands it a jaxpr of
    lax primitives, whose plugins are under ``plugins/jax``: import those and mark the tree imported
    (jax2onnx 0.13's ``plugin_system._import_tree`` and ``_already_imported_plugins``; where either is
    missing, nothing is done and jax2onnx imports everything as before). True when done."""
    global _plugins_imported
    if _plugins_imported is not None:
        return _plugins_imported == "lax"
    _plugins_imported = "all"
    from jax2onnx.plugins import plugin_system  # noqa: PLC0415

    if not (hasattr(plugin_system, "_import_tree")
            and getattr(plugin_system, "_already_imported_plugins", None) is False):
        return False
    plugin_system._import_tree(Path(plugin_system.__file__).parent / "jax", "jax2onnx.plugins.jax")
    plugin_system._already_imported_plugins = True
    _plugins_imported = "lax"
    return True


def _import_all_plugins() -> None:
    """After a conversion found no plugin for a primitive among the lax ones: let jax2onnx import the
    whole tree on its next conversion."""
    global _plugins_imported
    from jax2onnx.plugins import plugin_system  # noqa: PLC0415

    plugin_system._already_imported_plugins = False
    _plugins_imported = "all"


def onnx(model, variables, input_shape) -> bytes:
    """An ONNX model (bytes) of the eval-mode network: input ``image`` float32 ``(batch, *input_shape)``,
    output ``logits``."""
    try:
        from jax2onnx import to_onnx  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(EXTRA_HINT) from e
    if jnp.dtype(getattr(model, "dtype", jnp.float32)) != jnp.float32:
        raise ValueError(f"--format onnx: the model computes in {jnp.dtype(model.dtype).name}, which the ONNX "
                         f"converter does not take; export it as --format stablehlo, or from a float32 run")
    spec = _spec(input_shape)
    closed = jax.make_jaxpr(logits_fn(model, variables))(spec)

    def convert():
        return to_onnx(lambda x: _evaluate(closed.jaxpr, closed.consts, x)[0], [spec], input_names=["image"],
                       output_names=["logits"], model_name=type(model).__name__)

    # jax2onnx 0.13 reports plugins it cannot import under jax 0.10 (dm_pix) and onnx_ir shapes it skips
    loggers = [logging.getLogger(n) for n in ("jax2onnx", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        lax_only = _import_lax_plugins()
        try:
            proto = convert()
        except Exception as e:  # noqa: BLE001  (a plugin outside plugins/jax: with all, as jax2onnx alone would)
            if not (lax_only and "No plugins registered for primitive" in str(e)):
                raise
            _import_all_plugins()
            proto = convert()
    except Exception as e:  # noqa: BLE001  (the converter's own limits: unsupported primitives, symbolic shapes)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"--format onnx: the converter (jax2onnx) cannot convert {type(model).__name__} at input "
                         f"{tuple(input_shape)} ({type(e).__name__}: {first[:200]}); --format stablehlo exports "
                         f"every model") from e
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return proto.SerializeToString()


def check_onnx(data: bytes, model, variables, input_shape, *, batch: int = 2) -> float | None:
    """Max relative difference of onnxruntime's logits from JAX's on a random batch (None when
    onnxruntime is not installed); ValueError above :data:`RTOL`."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return None
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": x})[0]
    want = np.asarray(jax.jit(logits_fn(model, variables))(x))
    rel = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    if rel > RTOL:
        raise ValueError(f"onnxruntime's logits differ from JAX's by {rel:.3g} relative (allowed {RTOL}); the ONNX "
                         f"file was not written")
    return rel


# ----------------------------------------------------------------------------- files and command line

def _platforms(text: str | None) -> tuple[str, ...] | None:
    """``--platforms``: comma-separated names of ``PLATFORMS`` (None: the current backend)."""
    if text is None:
        return None
    names = tuple(n.strip().lower() for n in text.split(","))
    if not all(n in PLATFORMS for n in names):
        raise ValueError(f"--platforms={text}: allowed values are {', '.join(PLATFORMS)}, comma-separated "
                         "(NVIDIA GPUs are 'cuda', AMD GPUs 'rocm')")
    return names


def _check_pair(out: Path, sidecar: Path, overwrite: bool) -> None:
    """The artifact and its JSON can be written: neither exists (unless ``overwrite``), neither is a
    folder, and their folder takes files; one line naming ``--out``, before any export work."""
    from zoo import cli  # noqa: PLC0415

    for path in (out, sidecar):
        cli.keep_existing(path, "--out", overwrite)
        if path.is_dir():
            raise ValueError(f"--out: {path} is a folder")
    check_folder_to_write(out.parent, "--out's folder")


def _write_pair(out: Path, data: bytes, sidecar: Path, description: bytes, overwrite: bool) -> None:
    """The artifact and its JSON, both written in full before either replaces a file: a failed write
    (a full disk) leaves the earlier pair as it was."""
    _check_pair(out, sidecar, overwrite)
    with written_atomically(out) as tmp_out, written_atomically(sidecar) as tmp_json:
        Path(tmp_out).write_bytes(data)
        Path(tmp_json).write_bytes(description)


def describe(b, fmt: str, input_shape) -> dict:
    """The sidecar JSON: what the artifact takes and returns, and how to prepare images for it."""
    return {"format": fmt, "network": b.description, "model": type(b.model).__name__,
            "input": {"name": "image", "layout": "NHWC", "dtype": "float32", "shape": ["batch", *input_shape]},
            "output": {"name": "logits", "shape": ["batch", len(b.class_names)]},
            "preprocessing": b.preprocessing, "class_names": list(b.class_names), "jax": jax.__version__}


def main(argv=None) -> int:
    from zoo import bundle, cli  # noqa: PLC0415

    p = cli.parser("python -m zoo.export", __doc__, epilog=(
        "examples:\n  python -m zoo.export --model resnet50 --format onnx --out resnet50.onnx   # DEFAULT weights\n"
        "  python -m zoo.export --workdir runs/flowers --format stablehlo --out flowers.stablehlo\n\n"
        'ONNX needs the "export" extra: pip install -e ".[export]"'))
    bundle.add_arguments(p)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="the file to write (and OUT.json beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--platforms", default=None, help="stablehlo: comma-separated (cpu,cuda,rocm,tpu; default: this one)")
    args = p.parse_args(argv)
    if args.platforms is not None and args.format != "stablehlo":
        return cli.fail(f"--platforms={args.platforms}: only --format stablehlo takes platforms")
    try:
        platforms = _platforms(args.platforms)
    except ValueError as e:
        return cli.fail(e)
    try:
        out = check_file_name(args.out, "--out", "model.onnx")
    except ValueError as e:
        return cli.fail(e)
    sidecar = out.with_name(out.name + ".json")
    try:
        _check_pair(out, sidecar, args.overwrite)
        b = bundle.from_args(args, conv_impl="lax")
        h, w = b.preprocessing["image_size"]
        shape = (h, w, b.preprocessing["channels"])
        if args.format == "onnx":
            data = onnx(b.model, b.variables, shape)
            rel = check_onnx(data, b.model, b.variables, shape)
            checked = ("onnxruntime not installed: not checked" if rel is None
                       else f"onnxruntime: max rel. diff {rel:.2g}")
        else:
            data = stablehlo(b.model, b.variables, shape, platforms=platforms)
            checked = f"platforms {', '.join(jax.export.deserialize(data).platforms)}"
        _write_pair(out, data, sidecar, json.dumps(describe(b, args.format, shape), indent=1).encode(), args.overwrite)
    except (ValueError, ImportError, FileNotFoundError, OSError) as e:
        return cli.fail(e)
    print(f"{out}: {b.description} as {args.format}, input (batch, {h}, {w}, {shape[2]}) float32 NHWC, "
          f"{len(data) / 2**20:.1f} MiB ({checked}); preprocessing and class names in {sidecar}")
    return 0


if __name__ == "__main__":
    from zoo import cli

    sys.exit(cli.run(main))
