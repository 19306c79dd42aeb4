"""Test helpers: run a worker script in a fresh interpreter with N simulated CPU devices; random
variables; traced models; quick configs; schedule values; data pipelines and encoded images;
torch-format weight files written without torch; a local HTTP server; the inner loop's sample of a
parametrized test."""
import contextlib
import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "workers"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@contextlib.contextmanager
def benchmarks_module(name: str):
    """``benchmarks/<name>.py`` imported as a module (benchmarks/ is not a package), forgotten after."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
        sys.modules.pop(name, None)


def child_env(devices: int = 1, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_worker(name: str, *args, devices: int = 1, timeout: int = 600, env: dict | None = None) -> dict:
    """Run tests/workers/<name>.py with ``devices`` simulated devices; it prints one JSON line last."""
    cmd = [sys.executable, str(WORKERS / f"{name}.py"), *map(str, args)]
    proc = subprocess.run(cmd, env={**child_env(devices), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def random_variables(model, input_shape, seed: int = 0) -> dict:
    """Variables of ``model`` filled with He-scaled random numbers (no compiled init: forward-pass
    tests of large models only need well-scaled values). BatchNorm: scale 1, bias 0, mean 0, var 1."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape)), train=False))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("scale", "var"):
            return np.ones(s.shape, s.dtype)
        if name in ("bias", "mean") or len(s.shape) < 2:
            return np.zeros(s.shape, s.dtype)
        fan_in = int(np.prod(s.shape[:-1]))
        w = rng.standard_normal(s.shape, np.float32)  # one allocation: VGG's classifier alone is 100M values
        w *= np.float32(np.sqrt(1.0 / fan_in))
        return w.astype(s.dtype, copy=False)

    return jax.tree_util.tree_map_with_path(fill, shapes)


# ---------------------------------------------------------------------- zoo test helpers (one copy each)

@functools.lru_cache(maxsize=None)
def reference() -> dict:
    """tests/fixtures/reference.json: the published figures the zoo is checked against (vendored from
    ../shared/reference.md and the sources it names; never from our own output)."""
    return json.loads((FIXTURES / "reference.json").read_text())


def images(shape, seed: int = 0):
    """Standard-normal float32 images of ``shape`` ``(B, H, W, C)``, drawn with numpy (jax.random's
    first call compiles for seconds on CPU)."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def flat(tree) -> dict:
    """``{'a/b/kernel': leaf}`` of a nested dict of variables."""
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def count(tree) -> int:
    """Elements in all leaves of ``tree`` (arrays or ShapeDtypeStructs)."""
    import math

    import jax

    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _model_and_shape(model, input_shape, overrides):
    """``model`` itself (no overrides) or ``zoo.create(model, **overrides)`` for a registered name;
    ``input_shape`` ``(H, W, C)`` defaults to the variant's."""
    import zoo

    if isinstance(model, str):
        return zoo.create(model, **overrides), tuple(input_shape or zoo.model_info(model).input_shape)
    if overrides or input_shape is None:
        raise TypeError("pass a registered name for overrides / the default input shape, or a model and input_shape")
    return model, tuple(input_shape)


def abstract_variables(model, input_shape=None, **overrides) -> dict:
    """Variables (ShapeDtypeStructs) of ``model`` (a Module, or a registered name built with
    ``overrides``) for one image of ``input_shape``: ``jax.eval_shape`` of ``init``, nothing compiled."""
    import jax

    model, input_shape = _model_and_shape(model, input_shape, overrides)
    x = jax.ShapeDtypeStruct((1, *input_shape), jax.numpy.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def forward_shapes(model, input_shape=None, **overrides) -> tuple[dict, tuple]:
    """``({tap name: shape}, logits shape)`` for one image (batch 1), under ``jax.eval_shape``."""
    import jax

    model, input_shape = _model_and_shape(model, input_shape, overrides)
    x = jax.ShapeDtypeStruct((1, *input_shape), jax.numpy.float32)

    def run(x):
        logits, state = model.apply(model.init(jax.random.key(0), x), x, mutable=["features"])
        return logits, state["features"]

    logits, feats = jax.eval_shape(run, x)
    return {k: tuple(a.shape) for k, a in feats.items()}, tuple(logits.shape)


def layer_modules(model, input_shape=None, **overrides) -> dict:
    """``{path: module}`` of every conv, dense and norm layer, captured while ``init`` is traced under
    ``jax.eval_shape`` (their initialisers are attributes of the modules; nothing is drawn)."""
    import flax.linen as nn

    found = {}

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.Conv, nn.Dense, nn.BatchNorm, nn.GroupNorm)):
            found["/".join(mod.path)] = mod
        return next_fun(*args, **kwargs)

    model, input_shape = _model_and_shape(model, input_shape, overrides)
    with nn.intercept_methods(interceptor):
        abstract_variables(model, input_shape)
    return found


def key(seed: int = 0):
    """A PRNG key of the 'rbg' implementation: XLA's threefry is slow to compile on CPU, and tests of
    initialisers or dropout depend on the statistics of the draws, not on their values."""
    import jax

    return jax.random.key(seed, impl="rbg")


def draw(init, shape):
    """One draw of the initialiser ``init`` at ``shape`` (float32, :func:`key`)."""
    import jax
    import numpy as np

    return np.asarray(init(key(0), shape, jax.numpy.float32))


def batchnorm_settings(model, input_shape) -> set:
    """``{(epsilon, momentum)}`` of every BatchNorm of ``model`` (one image of ``input_shape``)."""
    import flax.linen as nn

    return {(m.epsilon, m.momentum) for m in layer_modules(model, input_shape).values() if isinstance(m, nn.BatchNorm)}


def run_once(fn, *args):
    """``fn(*args)`` compiled as one program with ``zoo.compiling.fast_compile_options`` (XLA's backend
    optimisation off on CPU: compiles 1.5-2x faster). For programs a test runs once; values equal an
    optimised build's up to float rounding."""
    from zoo.compiling import compile_once

    return compile_once(fn, *args)(*args)


@functools.lru_cache(maxsize=None)
def traced(name: str):
    """(layer rows, abstract variables) of a registered variant at its default input: one
    jax.eval_shape per model per test process (the registry tests' checks of a model share it)."""
    import zoo
    from zoo.summary import trace

    return trace(zoo.create(name), zoo.model_info(name).input_shape)


def lr_at(schedule, step) -> float:
    """An optax schedule's value at ``step``, given as the int32 step count the train state holds."""
    import jax.numpy as jnp

    return float(schedule(jnp.asarray(step, jnp.int32)))


def data_cfg(**fields):
    """The default config's ``data`` block with ``fields`` set, prefetch off (synchronous: simpler to
    reason about in tests; the prefetch threads are tested on their own)."""
    from configs import default

    c = default.get_config().data
    c.prefetch = 0
    for k, v in fields.items():
        setattr(c, k, v)
    return c


def load_data(c, split="train", train=True, batch_size=32, image_shape=(28, 28, 1), seed=0, pi=0, pc=1, **kw):
    """``train.data.load`` with the tests' defaults; ``pi`` / ``pc`` are the process index and count."""
    from train import data

    return data.load(c, split=split, train=train, batch_size=batch_size, image_shape=image_shape, seed=seed,
                     process_index=pi, process_count=pc, **kw)


def take(pipe_or_it, n) -> list:
    """The first ``n`` batches of a pipeline (a fresh iterator) or of an iterator."""
    it = iter(pipe_or_it)
    return [next(it) for _ in range(n)]


def png_bytes(arr, fmt="PNG") -> bytes:
    """``arr`` (uint8 (H, W) or (H, W, C)) encoded by PIL in ``fmt``."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def quick(**overrides):
    """The quickstart config (LeNet-5 on the offline mnist5k digits) shortened to 4 epochs, with
    dotted overrides: ``quick(**{"data.name": "synthetic", "num_train_steps": 5})``."""
    from configs import lenet5_mnist5k

    c = lenet5_mnist5k.get_config()
    c.num_epochs = 4.0
    c.update_from_flattened_dict(overrides)
    return c


def snapshot(path: Path) -> dict:
    """``{relative path: (size, mtime_ns)}`` of everything under ``path``: compare two to prove nothing changed."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


# ----------------------------------------------------------------------------- weight files and a local server

_STORAGES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage", "int64": "LongStorage",
             "int32": "IntStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}


def write_pth(path, state_dict: dict, *, legacy: bool = False) -> Path:
    """Write ``{key: numpy array}`` as ``torch.save`` does, without torch: the zip format (``archive/
    data.pkl`` + ``archive/data/<key>``) or the legacy stream (magic, protocol, sys info, the pickle,
    the storage keys, the raw storages). The pickle is written opcode by opcode, naming the globals
    PyTorch's own files name (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
    ``torch.FloatStorage`` ...); each tensor has its own storage, offset 0, C-contiguous strides."""
    import io
    import pickle
    import struct
    import zipfile

    import numpy as np

    out = io.BytesIO()
    w = out.write

    def text(s):
        b = s.encode()
        w(pickle.BINUNICODE + struct.pack("<I", len(b)) + b)

    def ints(values):
        w(pickle.MARK)
        for v in values:
            w(pickle.BININT + struct.pack("<i", int(v)))
        w(pickle.TUPLE)

    def glob(module, name):
        w(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    w(pickle.PROTO + b"\x02")
    glob("collections", "OrderedDict")
    w(pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.MARK)
    storages = {}
    for k, a in state_dict.items():
        a = np.array(a, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        key = str(len(storages))
        storages[key] = a
        text(k)
        glob("torch._utils", "_rebuild_tensor_v2")
        w(pickle.MARK + pickle.MARK)
        text("storage")
        glob("torch", _STORAGES[a.dtype.name])
        text(key)
        text("cpu")
        w(pickle.BININT + struct.pack("<i", a.size))
        if legacy:
            w(pickle.NONE)
        w(pickle.TUPLE + pickle.BINPERSID)
        w(pickle.BININT + struct.pack("<i", 0))
        ints(a.shape)
        ints([s // a.itemsize for s in a.strides] if a.ndim else [])
        w(pickle.NEWFALSE)
        glob("collections", "OrderedDict")
        w(pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.TUPLE + pickle.REDUCE)
    w(pickle.SETITEMS + pickle.STOP)
    path = Path(path)
    if not legacy:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", out.getvalue())
            z.writestr("archive/byteorder", "little")
            for key, a in storages.items():
                z.writestr(f"archive/data/{key}", a.astype(a.dtype.newbyteorder("<")).tobytes())
            z.writestr("archive/version", "3\n")
        return path
    with open(path, "wb") as f:
        for record in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                      "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            f.write(pickle.dumps(record, protocol=2))
        f.write(out.getvalue())
        f.write(pickle.dumps(list(storages), protocol=2))
        for a in storages.values():
            f.write(struct.pack("<q", a.size) + a.astype(a.dtype.newbyteorder("<")).tobytes())
    return path


@contextlib.contextmanager
def file_server(files: dict, *, truncated=(), barrier=None, types=None):
    """An HTTP server on 127.0.0.1 (standard library, in a thread) serving ``files`` (``{name: bytes}``)
    at ``server.url + '/' + name``, with ``types[name]`` as its Content-Type when given; names in
    ``truncated`` announce their full length and send half;
    with a ``threading.Barrier``, each request waits at it before sending (overlapping downloads).
    ``server.requests`` lists the names asked for."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.lstrip("/")
            self.server.requests.append(name)
            if name not in files:
                self.send_error(404)
                return
            body = files[name]
            if barrier is not None:
                barrier.wait()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if types and name in types:
                self.send_header("Content-Type", types[name])
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name in truncated else body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# The inner loop (-m "not integration and not slow") checks these; the full run checks every model.
INNER_LOOP_MODELS = frozenset({"lenet5", "lenet5_classic", "alexnet", "resnet18", "resnet20", "mobilenet_v3_small",
                               "shufflenet_v2_x0_5", "squeezenet1_1", "mnasnet0_5", "densenet121"})


def inner_loop_sample(names, fast=INNER_LOOP_MODELS) -> list:
    """``names`` as pytest parameters: those in ``fast`` in the inner loop, every other one marked
    ``integration`` (the full run, ``python -m pytest``, still runs them all)."""
    def values(n):  # a tuple is the values of several argument names
        return n if isinstance(n, tuple) else (n,)

    return [n if n in fast else pytest.param(*values(n), marks=pytest.mark.integration) for n in names]
