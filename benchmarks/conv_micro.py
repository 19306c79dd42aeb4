"""Isolated convolution timings on XLA:CPU: forward, backward-input (data gradient) and
backward-kernel (weight gradient) of single conv layers taken from the benchmarked models, for
several ways of expressing the same convolution and several XLA flag sets. The op-level input for
the slowest ratios of ``bench.py`` (see README.md, "Where the time goes").

    python benchmarks/conv_micro.py                          # all cases, all variants, no extra flags
    python benchmarks/conv_micro.py --cases lenet_conv1,r18_l3 --flag-sets all
    python benchmarks/conv_micro.py --flag-sets none,'--xla_cpu_use_xnnpack=false'
    python benchmarks/conv_micro.py --flag-sets=none,ynn_no_conv   # the steps' CPU option (zoo.compiling)

Variants of one conv ``y = conv(x, w)`` (NHWC input, HWIO kernel, explicit symmetric padding, as
``zoo.layers.Ops.conv`` calls ``lax.conv_general_dilated`` through ``flax.linen.Conv``):

* ``lax``      : ``lax.conv_general_dilated(x, w, ..., ('NHWC', 'HWIO', 'NHWC'))`` (what the zoo does)
* ``nchw``     : the same convolution written in NCHW / OIHW (transposes around it)
* ``im2col``   : pad, take the kh*kw shifted strided slices, concatenate on channels, one matmul
                 ``(B*Ho*Wo, kh*kw*C) @ (kh*kw*C, O)``; its gradients are slices/pads and matmuls
                 (``zoo.convs.conv_im2col``)
* ``patches``  : ``lax.conv_general_dilated_patches`` + matmul (XLA's own im2col, a grouped conv)
* ``lax_wim2col``, ``lax_wtaps``: ``lax`` forward and input gradient, the kernel gradient as matmuls
                 (``experiments.conv_dot_kernel_grad``): im2col^T @ dy, or one ``(C, B*Ho*Wo) @ (B*Ho*Wo, O)``
                 per tap (2026-11-30: no faster than XLA's own kernel gradient; benchmarks/README.md)
* ``zcol``     : stride 1, "same" padding only: one matmul of the input to all kh*kw taps' outputs
                 ``(B*H*W, C) @ (C, kh*kw*O)``, then the sum of the kh*kw shifted slices of that output
                 (2026-12-01: forward 2.3x slower than ``lax`` at 56x56, level at 14x14; benchmarks/README.md,
                 "Round 14")
* ``s2d``      : space-to-depth: a stride-s convolution as a stride-1 convolution over s x s blocks of the input
                 (s*s*C channels, kernel ceil(k/s)); for first layers with 3 channels (2026-12-01: mixed,
                 benchmarks/README.md "Round 14")
* ``wino2``, ``wino4``: 3x3, stride 1, padding 1 only: Winograd F(2x2, 3x3) / F(4x4, 3x3) (Lavin & Gray,
                 "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): input tiles transformed by
                 shifted strided slices and sums, one batched matmul per tile position, output transform
                 (2026-12-01: forward 3.4-4.7x slower than ``lax`` at 56x56; benchmarks/README.md "Round 15")

Each flag set runs in its own process (XLA_FLAGS must be set before jax is imported).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from bench_args import at_least

# name: (x shape NHWC, kernel (kh, kw, C_in, C_out), stride, padding, what)
CASES = {
    "lenet_conv1": ((64, 28, 28, 1), (5, 5, 1, 6), 1, 2, "LeNet-5 conv1, batch 64"),
    "lenet_conv2": ((64, 14, 14, 6), (5, 5, 6, 16), 1, 0, "LeNet-5 conv2, batch 64"),
    "r18_conv1_32": ((64, 32, 32, 3), (7, 7, 3, 64), 2, 3, "ResNet stem at 32x32, batch 64"),
    "r18_l1_32": ((64, 8, 8, 64), (3, 3, 64, 64), 1, 1, "ResNet-18 layer1 conv at 32x32 (8x8)"),
    "r18_l3_32": ((64, 2, 2, 256), (3, 3, 256, 256), 1, 1, "ResNet-18 layer3 conv at 32x32 (2x2)"),
    "r18_l4_32": ((64, 1, 1, 512), (3, 3, 512, 512), 1, 1, "ResNet-18 layer4 conv at 32x32 (1x1)"),
    "vgg_c1_32": ((64, 32, 32, 3), (3, 3, 3, 64), 1, 1, "VGG conv1 at 32x32, batch 64"),
    "r18_conv1_224": ((16, 224, 224, 3), (7, 7, 3, 64), 2, 3, "ResNet stem at 224, batch 16"),
    "r18_l1_224": ((16, 56, 56, 64), (3, 3, 64, 64), 1, 1, "ResNet-18 layer1 conv at 224 (56x56), batch 16"),
    "r18_l4_224": ((16, 7, 7, 512), (3, 3, 512, 512), 1, 1, "ResNet-18 layer4 conv at 224 (7x7), batch 16"),
    "vgg_c1_224": ((16, 224, 224, 3), (3, 3, 3, 64), 1, 1, "VGG conv1 at 224, batch 16"),
    "mbv2_c1_224": ((16, 224, 224, 3), (3, 3, 3, 32), 2, 1, "MobileNet-V2 stem (3x3/2) at 224, batch 16"),
    "dn_b1_3x3_224": ((16, 56, 56, 128), (3, 3, 128, 32), 1, 1, "DenseNet-121 block1 conv2 at 224 (56x56), batch 16"),
    "dn_b3_3x3_224": ((16, 14, 14, 128), (3, 3, 128, 32), 1, 1, "DenseNet-121 block3 conv2 at 224 (14x14), batch 16"),
}
VARIANTS = ("lax", "nchw", "im2col", "patches", "lax_wim2col", "lax_wtaps", "zcol", "s2d", "wino2", "wino4")
# Winograd F(m, 3) matrices (B^T, G, A^T) for m = 2 and 4, Lavin & Gray (2016), section 4
WINOGRAD = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
         [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
FLAG_SETS = {
    "none": "",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_dot": "--xla_cpu_experimental_xnn_fusion_type=dot",
    "ynn_off": "--xla_cpu_experimental_ynn_fusion_type=",
    "ynn_no_conv": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",   # zoo.compiling.CPU_STEP_OPTIONS
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_cc": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "eigen_1thread": "--xla_cpu_multi_thread_eigen=false",
}


def _variants(stride, pad, kernel_hw):
    import jax.numpy as jnp  # noqa: PLC0415
    from jax import lax  # noqa: PLC0415

    from experiments import conv_dot_kernel_grad  # noqa: PLC0415  (benchmarks/: this script's folder)
    from zoo.convs import conv_im2col, shifted_slices  # noqa: PLC0415

    strides, pads = (stride, stride), ((pad, pad), (pad, pad))

    def conv_lax(x, w):
        return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def conv_nchw(x, w):
        y = lax.conv_general_dilated(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), strides, pads,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y.transpose(0, 2, 3, 1)

    def conv_patches(x, w):
        kh, kw, c, o = w.shape
        p = lax.conv_general_dilated_patches(x, (kh, kw), strides, pads,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))  # (B, Ho, Wo, C*kh*kw)
        # feature order of patches is (c, kh, kw)
        return p @ w.transpose(2, 0, 1, 3).reshape(c * kh * kw, o)

    def conv_zcol(x, w):  # stride 1, padding (kh - 1) / 2 only
        kh, kw, c, o = w.shape
        z = x @ w.transpose(2, 0, 1, 3).reshape(c, kh * kw * o)        # (B, H, W, kh*kw*O): one matmul
        taps = shifted_slices(z, kh, kw, (1, 1), ((kh // 2,) * 2, (kw // 2,) * 2))
        return sum(t[..., i * o:(i + 1) * o] for i, t in enumerate(taps))

    def conv_s2d(x, w):  # space-to-depth: stride s > 1 as a stride-1 conv over s x s blocks
        k, _, c, o = w.shape
        b, h, wd, _ = x.shape
        s, kb = stride, -(-k // stride)
        hb, wb = -(-(h + 2 * pad) // s), -(-(wd + 2 * pad) // s)
        x = jnp.pad(x, ((0, 0), (pad, hb * s - h - pad), (pad, wb * s - wd - pad), (0, 0)))
        x = x.reshape(b, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hb, wb, s * s * c)
        w = jnp.pad(w, ((0, kb * s - k), (0, kb * s - k), (0, 0), (0, 0)))
        w = w.reshape(kb, s, kb, s, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kb, kb, s * s * c, o)
        ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, :ho, :wo]

    def _combine(coefs, parts):   # sum of c * part over the non-zero coefficients: one fused loop
        terms = [p if c == 1 else -p if c == -1 else p * c for c, p in zip(coefs, parts) if c]
        return functools.reduce(lambda a, b: a + b, terms)

    def conv_winograd(x, w, m):  # 3x3, stride 1, padding 1 only
        bt, g, at = WINOGRAD[m]
        g = jnp.asarray(g, x.dtype)                                               # (n, 3)
        n, (b, h, wd, c), o = m + 2, x.shape, w.shape[-1]
        th, tw = -(-h // m), -(-wd // m)                                         # output tiles
        xp = jnp.pad(x, ((0, 0), (1, th * m + 1 - h), (1, tw * m + 1 - wd), (0, 0)))
        rows = [lax.slice_in_dim(xp, a, a + (th - 1) * m + 1, m, axis=1) for a in range(n)]   # (B, th, W', C)
        v = []
        for r in (_combine(bt[p], rows) for p in range(n)):             # B^T d, then (B^T d) B
            cols = [lax.slice_in_dim(r, q, q + (tw - 1) * m + 1, m, axis=2) for q in range(n)]  # (B, th, tw, C)
            v += [_combine(bt[q], cols) for q in range(n)]
        v = jnp.stack(v).reshape(n * n, b * th * tw, c)                          # (n*n, tiles, C)
        u = jnp.einsum("pa,qb,abco->pqco", g, g, w).reshape(n * n, c, o)         # G w G^T: (n*n, C, O)
        z = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,)))).reshape(n, n, b, th, tw, o)
        ys = []
        for i in range(m):                                                        # A^T z A
            t = [_combine(at[i], [z[p, q] for p in range(n)]) for q in range(n)]
            ys.append(jnp.stack([_combine(at[j], t) for j in range(m)], axis=3))    # (B, th, tw, m, O)
        return jnp.stack(ys, axis=2).reshape(b, th * m, tw * m, o)[:, :h, :wd]

    fns = {"lax": conv_lax, "nchw": conv_nchw, "s2d": conv_s2d,
            "im2col": lambda x, w: conv_im2col(x, w, strides, pads),
            "patches": conv_patches,
            "lax_wim2col": lambda x, w: conv_dot_kernel_grad(x, w, strides, pads, taps=False),
            "lax_wtaps": lambda x, w: conv_dot_kernel_grad(x, w, strides, pads, taps=True)}
    if stride == 1 and all(2 * pad + 1 == n for n in kernel_hw):   # zcol's only case
        fns["zcol"] = conv_zcol
    if stride == 1 and pad == 1 and tuple(kernel_hw) == (3, 3):              # Winograd F(m, 3)'s only case
        fns["wino2"] = lambda x, w: conv_winograd(x, w, 2)
        fns["wino4"] = lambda x, w: conv_winograd(x, w, 4)
    return fns


def _time(f, args, reps, min_s=0.3):
    import jax  # noqa: PLC0415
    jax.block_until_ready(f(*args))
    times = []
    t_end = time.perf_counter() + min_s
    while len(times) < reps or (time.perf_counter() < t_end and len(times) < 50):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(cases, variants, reps) -> list[dict]:
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    rows = []
    for name in cases:
        xs, ks, stride, pad, what = CASES[name]
        rng = np.random.default_rng(0)
        x = jax.numpy.asarray(rng.standard_normal(xs, dtype=np.float32))
        w = jax.numpy.asarray(rng.standard_normal(ks, dtype=np.float32) * 0.1)
        fns = _variants(stride, pad, ks[:2])
        ref = fns["lax"](x, w)
        g = jax.numpy.asarray(rng.standard_normal(ref.shape, dtype=np.float32))
        macs = int(np.prod(ref.shape)) * ks[0] * ks[1] * ks[2]
        for v in variants:
            if v not in fns:
                print(f"  {name:14s} {v:8s} (not defined for this case)", flush=True)
                continue
            f = fns[v]
            err = float(jax.numpy.max(jax.numpy.abs(f(x, w) - ref)) / (jax.numpy.max(jax.numpy.abs(ref)) + 1e-12))
            fwd = jax.jit(f)
            bwd_x = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda x: f(x, w), x)[1](g)[0])
            bwd_w = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda w: f(x, w), w)[1](g)[0])
            both = jax.jit(lambda x, w, g, f=f: jax.grad(lambda x, w: (f(x, w) * g).sum(), argnums=(0, 1))(x, w))
            r = {"case": name, "what": what, "variant": v, "macs": macs, "rel_err": err,
                 "fwd_ms": 1e3 * _time(fwd, (x, w), reps), "bwd_input_ms": 1e3 * _time(bwd_x, (x, w, g), reps),
                 "bwd_kernel_ms": 1e3 * _time(bwd_w, (x, w, g), reps),
                 "fwd_bwd_ms": 1e3 * _time(both, (x, w, g), reps)}
            r["fwd_gmac_s"] = macs / r["fwd_ms"] / 1e6
            rows.append(r)
            print(f"  {name:14s} {v:8s} fwd {r['fwd_ms']:8.2f} ms ({r['fwd_gmac_s']:6.1f} GMAC/s)  bwd-in "
                  f"{r['bwd_input_ms']:8.2f}  bwd-k {r['bwd_kernel_ms']:8.2f}  fwd+both-grads {r['fwd_bwd_ms']:8.2f} ms"
                  f"  err {err:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--flag-sets", default="none", help=f"comma-separated names of {list(FLAG_SETS)}, 'all', "
                    "or literal flag strings starting with --")
    ap.add_argument("--reps", type=at_least(1), default=5)
    ap.add_argument("--out", help="JSON rows")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    cases, variants = a.cases.split(","), a.variants.split(",")
    for flag, given, allowed in (("--cases", cases, CASES), ("--variants", variants, VARIANTS)):
        unknown = [x for x in given if x not in allowed]
        if unknown:
            ap.error(f"{flag}: unknown name(s) {', '.join(unknown) or '(none given)'}; allowed: {', '.join(allowed)}")
    bad = [] if a.flag_sets == "all" else [s for s in a.flag_sets.split(",") if s not in FLAG_SETS and not s.startswith("--")]
    if bad:
        ap.error(f"--flag-sets: unknown set(s) {', '.join(bad) or '(none given)'}; allowed: 'all', names of "
                 f"{', '.join(FLAG_SETS)}, or literal flags starting with --")
    if a._worker:
        rows = worker(cases, variants, a.reps)
        print("JSON:" + json.dumps(rows))
        return 0
    sets = list(FLAG_SETS) if a.flag_sets == "all" else a.flag_sets.split(",")
    all_rows, failed = [], []
    for s in sets:
        flags = FLAG_SETS.get(s, s)
        env = dict(os.environ)
        env["XLA_FLAGS"] = " ".join(x for x in (env.get("XLA_FLAGS", ""), flags) if x)
        print(f"== flags {s!r}: XLA_FLAGS={env['XLA_FLAGS']!r}  load {os.getloadavg()[0]:.2f}", flush=True)
        p = subprocess.run([sys.executable, __file__, "--_worker", "--cases", a.cases, "--variants", a.variants,
                            "--reps", str(a.reps)], env=env, capture_output=True, text=True)
        for line in p.stdout.splitlines():
            if line.startswith("JSON:"):
                for r in json.loads(line[5:]):
                    r.update(flags=flags, flag_set=s)
                    all_rows.append(r)
            else:
                print(line, flush=True)
        if p.returncode:
            print(f"   failed (rc {p.returncode}): {p.stderr[-800:]}", flush=True)
            failed.append(s)
    if a.out:   # a run with a failed flag set does not go to --out: its rows go beside it, named as incomplete
        out = Path(a.out) if not failed else Path(a.out).with_name(Path(a.out).stem + ".incomplete.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(all_rows, indent=1))
        print(f"wrote {out}", flush=True)
    if failed:
        print(f"failed flag set(s): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
