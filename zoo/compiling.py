"""XLA compile options and the persistent compilation cache, in one place; ``init``: a model's
variables from one compiled call; :class:`Ahead`: a compile begun in a background thread;
:func:`gc_paused`: Python's cyclic garbage collector held while JAX traces a program."""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp

from zoo.checks import check_model_input

log = logging.getLogger("zoo")


# XLA:CPU without LLVM optimisation compiles an initialisation 1.1-1.6x faster than at level 1, but
# its threefry code runs ~5x slower (35-70 vs 13 ns per random value): above this many output
# values the run costs more than the compile saves (VGG-11's 133 M parameters: 11.0 s -> 3.5 s).
FAST_COMPILE_MAX_VALUES = 32_000_000


def fast_compile_options(out_values: int = 0) -> dict:
    """XLA options for programs that run once (initialisation) and write ``out_values`` values: on
    CPU no LLVM optimisation (the per-parameter threefry code is what XLA:CPU is slow to optimise), or
    level 1 above :data:`FAST_COMPILE_MAX_VALUES`. Values can differ from an optimised build in the
    last bits (float fusion)."""
    if jax.default_backend() != "cpu":
        return {}
    return {"xla_backend_optimization_level": 0 if out_values <= FAST_COMPILE_MAX_VALUES else 1}


# XLA:CPU (jaxlib 0.10) sends dots, reductions and convolutions to YNNPACK by default; its Eigen
# convolutions ran ordinary 3x3 convolutions 1.7-2x faster here (forward and both gradients;
# benchmarks/README.md "Round 3"). XLA's default list without INDIVIDUAL_CONVOLUTION
# (the same as XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution, which
# compile options cannot spell): YNNPACK keeps dots and reductions (without it, BatchNorm's
# reductions fall to XLA's loops: MobileNet-V2 trains 2x slower at 224).
# XLA:CPU's memory-optimised scheduler orders the step's ops so that fewer buffers are live at once:
# peak RSS at b16 224 5-31% lower for 10 of the 12 benchmarked models (DenseNet-121 4,647 -> 3,364
# MiB), AlexNet's 1-3%, SqueezeNet 1.1's 5-14% higher (~100 MiB); the steps' speed level except
# VGG-11's train step at 224 (~6% slower); the same values (benchmarks/README.md "Round 22").
CPU_STEP_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
                    "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def step_compile_options(platform: str) -> dict:
    """XLA options for the programs that run many times (train / eval steps, prediction) on devices
    of ``platform`` (``jax.Device.platform``): on CPU, :data:`CPU_STEP_OPTIONS`, each unless ``XLA_FLAGS``
    already sets that option (an experiment, a user's choice: theirs wins); elsewhere none. Part of
    the compilation cache's key like every compile option; results change in the last bits only
    (another summation order)."""
    if platform != "cpu":
        return {}
    given = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in CPU_STEP_OPTIONS.items() if f"--{k}=" not in given}


class _GcPause:
    """The collector held while any thread is inside :func:`gc_paused`; released by the last one
    out (and only if it was on when the first came in)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.holders = 0
        self.was_enabled = False

    @contextlib.contextmanager
    def __call__(self):
        with self.lock:
            if self.holders == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.holders += 1
        try:
            yield
        finally:
            with self.lock:
                self.holders -= 1
                if self.holders == 0 and self.was_enabled:
                    gc.enable()


# Tracing a train step makes hundreds of thousands of objects that live until it ends (the jaxpr's
# equations, tracers), so Python's collector runs its full collections again and again over a
# growing heap and finds little: DenseNet-121's train step (b64 32x32) traced in 4.4-5.1 s with the
# collector held, 5.3-6.7 s with it running (benchmarks/README.md, "Round 20"). Cycles made meanwhile
# wait for the first collection after.
gc_paused = _GcPause()


def compile_once(fn, *args, drawn=lambda out: out):
    """``jax.jit(fn)`` lowered and compiled with :func:`fast_compile_options` for ``args`` and the
    number of values in ``drawn(output)`` (default: all it returns; a train state's initialisation
    counts its model variables, so that they are the same values as :func:`init` gives)."""
    with gc_paused():
        lowered = jax.jit(fn).lower(*args)
    out_values = sum(math.prod(o.shape) for o in jax.tree.leaves(drawn(lowered.out_info)))
    return lowered.compile(compiler_options=fast_compile_options(out_values))


def init(model, input_shape, *, rng: int | jax.Array = 0, batch: int = 1) -> dict:
    """``model.init`` for one input shape ``(H, W, C)``, compiled once as a whole (fast on CPU, where
    an eager ``model.init`` compiles every op separately). Returns ``{'params', ['batch_stats']}``."""
    key = jax.random.PRNGKey(rng) if isinstance(rng, int) else rng
    x = jnp.zeros((batch, *check_model_input(model, input_shape)), jnp.float32)
    return compile_once(lambda k: model.init(k, x, train=False), key, drawn=_model_variables)(key)


def _model_variables(variables: dict) -> tuple:
    return variables.get("params", {}), variables.get("batch_stats", {})


class Ahead:
    """``fn`` (a ``jax.jit`` function) lowered and compiled in a background thread for the abstract
    arguments ``args()`` returns (``jax.ShapeDtypeStruct`` leaves with their shardings), while the
    caller does other work (a run makes or restores its state meanwhile: XLA's compile releases the
    GIL, and on 2 cores uses ~1.6 of them). JAX keeps the executable, so ``fn``'s first call with
    arguments of those shapes, dtypes and shardings compiles nothing; call :meth:`wait` before it.

    A failure here is not reported: the first call then compiles in the caller's thread and raises
    there, as without this. The thread is not a daemon: an interpreter is not torn down under XLA's
    compile (the command lines' ``train.interrupts.finish`` stops waiting for it after its grace)."""

    def __init__(self, fn, args: Callable[[], tuple]):
        self.seconds: float | None = None   # the compile's wall-clock time, once it succeeded
        self._thread = threading.Thread(target=self._compile, args=(fn, args), name="zoo-compile-ahead")
        self._thread.start()

    def _compile(self, fn, args) -> None:
        t = time.perf_counter()
        try:
            with gc_paused():
                lowered = fn.lower(*args())
            lowered.compile()
        except Exception:   # noqa: BLE001 (the first call compiles again and raises in the caller's thread)
            log.debug("compiling ahead failed; the first call compiles", exc_info=True)
            return
        self.seconds = time.perf_counter() - t

    def wait(self) -> float | None:
        """Block until the compile has ended; its wall-clock seconds (None: it failed)."""
        self._thread.join()
        return self.seconds


# ---------------------------------------------------------------------- persistent compilation cache
CACHE_ENV = "ZOO_COMPILE_CACHE"   # 'off' | a directory; unset: default_cache_dir()
CACHE_OFF = ("off", "0", "false", "no", "none")
CACHE_MIN_COMPILE_SECS = 0.1      # programs that compile faster than this are not written (the eager ops' tiny ones)
_cache_state: dict = {"dir": None}


def default_cache_dir() -> Path:
    """``jax`` in the project's cache (``zoo.weights.download.cache_root``: ``$ZOO_CACHE``, else
    ``~/.cache/cnn-zoo``)."""
    from zoo.weights.download import cache_root  # noqa: PLC0415

    return cache_root() / "jax"


def cache_dir_for(setting: str | None = "auto") -> Path | None:
    """The cache directory a setting names: ``'off'`` -> None, a path -> it, ``'auto'`` / None -> the
    environment variable ``ZOO_COMPILE_CACHE`` (``off`` or a path) when set, else :func:`default_cache_dir`."""
    setting = "auto" if setting is None else str(setting).strip()
    if setting == "auto":
        setting = os.environ.get(CACHE_ENV, "").strip() or str(default_cache_dir())
    if setting.lower() in CACHE_OFF or not setting:
        return None
    return Path(setting).expanduser()


def use_compile_cache(setting: str | None = "auto") -> Path | None:
    """Turn JAX's persistent compilation cache on in the directory ``setting`` names
    (:func:`cache_dir_for`), or off; returns the directory in use. Every command that compiles
    calls it once (``train.setup.create_model``, ``zoo.bundle.from_args``, zoo.convert's CLI). A compiled program is
    then read back from disk by any later process that compiles the same program (JAX's key: the
    lowered module, compile options, backend, device kinds, jax/jaxlib versions and XLA flags), so a
    changed model, step, input shape or jax version compiles afresh. A directory that cannot be
    created leaves the cache off, with a warning: compiling is never blocked by it."""
    from jax.experimental.compilation_cache import compilation_cache as cc  # noqa: PLC0415

    path = cache_dir_for(setting)
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(f"not writable: {path}")
        except OSError as e:
            log.warning("compilation cache off: cannot use %s (%s); set %s=off or another directory",
                        path, e, CACHE_ENV)
            path = None
    wanted = None if path is None else str(path)
    if wanted == _cache_state["dir"] == jax.config.jax_compilation_cache_dir:
        return path
    jax.config.update("jax_compilation_cache_dir", None if path is None else str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECS)
    cc.reset_cache()   # JAX opens its cache once per process: a moved or disabled one needs a reset
    _cache_state["dir"] = wanted
    if path is not None:
        log.debug("compilation cache: %s (%s=off turns it off)", path, CACHE_ENV)
    return path
