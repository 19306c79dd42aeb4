"""zoo.compiling: the persistent compilation cache switch (on by default in a user cache directory,
moved or turned off by the config field or the environment variable), the compile options, and a
compile begun ahead in a background thread (``Ahead``)."""
import logging
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import compiling


@pytest.fixture
def restore_cache():
    """Leave the process's cache setting as the test found it."""
    before = jax.config.jax_compilation_cache_dir
    yield
    compiling.use_compile_cache(before or "off")


def test_default_is_the_projects_user_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(compiling.CACHE_ENV, raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))   # where the weights are cached too
    assert compiling.cache_dir_for("auto") == tmp_path / "jax"
    assert compiling.cache_dir_for(None) == tmp_path / "jax"
    monkeypatch.delenv("ZOO_CACHE")
    assert compiling.cache_dir_for("auto") == Path.home() / ".cache" / "cnn-zoo" / "jax"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "none"])
def test_the_environment_variable_turns_it_off(monkeypatch, value):
    monkeypatch.setenv(compiling.CACHE_ENV, value)
    assert compiling.cache_dir_for("auto") is None


def test_the_environment_variable_moves_it_and_the_config_field_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(compiling.CACHE_ENV, str(tmp_path / "moved"))
    assert compiling.cache_dir_for("auto") == tmp_path / "moved"
    assert compiling.cache_dir_for(str(tmp_path / "mine")) == tmp_path / "mine"
    assert compiling.cache_dir_for("off") is None
    assert compiling.cache_dir_for("~/x") == Path.home() / "x"


def test_use_sets_jax_once_and_can_turn_it_off(tmp_path, restore_cache):
    assert compiling.use_compile_cache(str(tmp_path / "c")) == tmp_path / "c"
    assert (tmp_path / "c").is_dir() and jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compiling.CACHE_MIN_COMPILE_SECS
    assert compiling.use_compile_cache(str(tmp_path / "c")) == tmp_path / "c"   # again: nothing changes
    assert compiling.use_compile_cache("off") is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_directory_that_cannot_be_made_leaves_the_cache_off(tmp_path, caplog, restore_cache):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        assert compiling.use_compile_cache(str(blocker / "jax")) is None
    assert jax.config.jax_compilation_cache_dir is None
    assert [r.getMessage() for r in caplog.records if "compilation cache off" in r.getMessage()]


# ---------------------------------------------------------------------- compile options of the steps
def _conv3x3(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_programs(options):
    """A 3x3 conv's forward, input gradient and kernel gradient, each compiled with ``options``."""
    fns = {"forward": _conv3x3,
           "input gradient": lambda x, w, g: jax.vjp(lambda x: _conv3x3(x, w), x)[1](g)[0],
           "kernel gradient": lambda x, w, g: jax.vjp(lambda w: _conv3x3(x, w), w)[1](g)[0]}
    return {k: jax.jit(f, compiler_options=options) for k, f in fns.items()}


def _ynn_convolutions(compiled) -> int:
    """YNNPACK fusions made of a convolution in a compiled program's optimised HLO."""
    return sum("__ynn_fusion" in line and "conv_general_dilated" in line for line in compiled.as_text().splitlines())


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's option")
def test_cpu_steps_run_convolutions_outside_ynnpack_with_the_same_values_and_gradients(monkeypatch):
    import numpy as np

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 28, 28, 32), dtype=np.float32)   # large enough for YNNPACK to take it
    w = rng.standard_normal((3, 3, 32, 32), dtype=np.float32) * 0.1
    g = rng.standard_normal((8, 28, 28, 32), dtype=np.float32)
    default, ours = _conv_programs(None), _conv_programs(compiling.step_compile_options("cpu"))
    for name in default:
        args = (x, w) if name == "forward" else (x, w, g)
        assert _ynn_convolutions(ours[name].lower(*args).compile()) == 0, name
        want, got = np.asarray(default[name](*args)), np.asarray(ours[name](*args))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)
    assert _ynn_convolutions(default["forward"].lower(x, w).compile()) == 1   # XLA's default, which we change


def test_step_options_are_for_cpu_only_and_xla_flags_win(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert compiling.step_compile_options("cpu") == compiling.CPU_STEP_OPTIONS
    assert compiling.step_compile_options("gpu") == {} and compiling.step_compile_options("tpu") == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=")
    assert compiling.step_compile_options("cpu") == {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_DEFAULT")
    assert compiling.step_compile_options("cpu") == {}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's option")
def test_the_memory_optimised_schedule_keeps_fewer_buffers_live_with_the_same_values(monkeypatch):
    """The gradient of a chain of conv -> normalise -> ReLU layers, the shape of every network's step:
    XLA's default CPU schedule and the steps' one compute bit-identical results (ordering does not
    change arithmetic), and the steps' needs a smaller temporary buffer (benchmarks/README.md,
    "Round 22": peak RSS 5-31% lower at 224 for 10 of the 12 benchmarked models)."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 28, 28, 32), dtype=np.float32)
    ws = [rng.standard_normal((3, 3, 32, 32), dtype=np.float32) * 0.1 for _ in range(6)]

    def loss(ws, x):
        for w in ws:
            y = _conv3x3(x, w)
            mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
            x = jax.nn.relu((y - mean) * jax.lax.rsqrt(var + 1e-5))
        return (x ** 2).mean()

    grad = jax.grad(loss)
    ynn_only = {"xla_cpu_experimental_ynn_fusion_type": compiling.CPU_STEP_OPTIONS["xla_cpu_experimental_ynn_fusion_type"]}
    default = jax.jit(grad, compiler_options=ynn_only).lower(ws, x).compile()
    ours = jax.jit(grad, compiler_options=compiling.step_compile_options("cpu")).lower(ws, x).compile()
    assert ours.memory_analysis().temp_size_in_bytes < default.memory_analysis().temp_size_in_bytes
    for got, want in zip(ours(ws, x), default(ws, x), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's option")
def test_the_compiled_train_step_carries_the_options(monkeypatch):
    import numpy as np

    from train import parallel

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    plan = parallel.Plan("shard_map", tuple(jax.devices()[:1]))
    step = parallel.compile_step(lambda w, x: (_conv3x3(x, w) ** 2).sum(), plan, donate_state=False)
    x = np.ones((8, 28, 28, 32), np.float32)
    compiled = step.lower(np.ones((3, 3, 32, 32), np.float32), x).compile()
    assert "convolution(" in compiled.as_text() and _ynn_convolutions(compiled) == 0


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's option")
def test_the_cpu_option_takes_only_convolutions_from_ynnpack():
    """Dots and reductions (BatchNorm's) stay where XLA puts them by default: without YNNPACK's
    reductions MobileNet-V2 trains 2x slower at 224 (benchmarks/README.md)."""
    import numpy as np

    def f(x, w, m):
        y = jnp.tanh(_conv3x3(x, w))
        return y.sum(axis=(0, 1, 2)) @ m, (y.reshape(-1, 64) @ m).mean(), (x * x).max(axis=-1)

    args = (np.ones((8, 28, 28, 64), np.float32), np.ones((3, 3, 64, 64), np.float32), np.ones((64, 64), np.float32))

    def ynn_fusions(options):
        text = jax.jit(f, compiler_options=options).lower(*args).compile().as_text()
        return [line.split(" = ")[1].split(" fusion(")[0] + (" conv" if "conv_general_dilated" in line else "")
                for line in text.splitlines() if "__ynn_fusion" in line and " = " in line]

    default, ours = ynn_fusions(None), ynn_fusions(compiling.step_compile_options("cpu"))
    # sorted: the steps' schedule orders the program's ops differently
    assert sorted(k for k in default if not k.endswith(" conv")) == sorted(ours)
    assert len(ours) >= 2 and len(default) == len(ours) + 1


def _convolutions_inside_ynn(compiled) -> int:
    """Convolutions inside the computations of YNNPACK fusions (a fusion carries its root's name: a
    reduction fusion that took in a convolution is not named after it)."""
    text = compiled.as_text()
    called = re.findall(r'calls=(%[\w.\-]+), [^\n]*"__ynn_fusion"', text)
    bodies = dict(re.findall(r"^(%[\w.\-]+) [^\n]*\{\n(.*?)^\}", text, re.S | re.M))
    return sum(bodies.get(c, "").count(" convolution(") for c in called)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's fusions")
def test_a_pool_after_a_cpu_convolution_leaves_the_convolution_to_eigen(monkeypatch):
    """An eval program's classifier (conv -> ReLU -> global average pool -> dot): with the steps'
    option XLA:CPU still grows a YNNPACK reduction fusion from the pool back over a ``lax``
    convolution, which then runs in YNNPACK (ResNet-18's last seven at 224: benchmarks/README.md,
    "Round 10"); the 'cpu' implementation's boundary stops it there, with the same values."""
    from zoo import convs

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 14, 14, 32), dtype=np.float32)
    w = rng.standard_normal((3, 3, 32, 32), dtype=np.float32) * 0.1
    m = rng.standard_normal((32, 16), dtype=np.float32)

    def classifier(impl):
        def f(x, w, m):
            y = impl(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jax.nn.relu(y).mean(axis=(1, 2)) @ m
        return jax.jit(f, compiler_options=compiling.step_compile_options("cpu")).lower(x, w, m).compile()

    plain, ours = classifier(jax.lax.conv_general_dilated), classifier(convs.cpu_conv_general_dilated)
    assert _convolutions_inside_ynn(plain) == 1      # XLA's fusion, which the option does not prevent
    assert _convolutions_inside_ynn(ours) == 0 and "convolution(" in ours.as_text()
    np.testing.assert_allclose(ours(x, w, m), plain(x, w, m), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ programs that run once (init)

def test_run_once_options_leave_llvm_optimisation_off_except_for_large_initialisations():
    if jax.default_backend() != "cpu":
        pytest.skip("CPU-only options")
    assert compiling.fast_compile_options() == {"xla_backend_optimization_level": 0}
    assert compiling.fast_compile_options(compiling.FAST_COMPILE_MAX_VALUES) == {"xla_backend_optimization_level": 0}
    assert compiling.fast_compile_options(compiling.FAST_COMPILE_MAX_VALUES + 1) == {"xla_backend_optimization_level": 1}


def test_compile_once_weighs_the_values_it_draws(monkeypatch):
    seen = []
    real = compiling.fast_compile_options
    monkeypatch.setattr(compiling, "fast_compile_options", lambda n=0: seen.append(n) or real(n))
    fn = lambda k: {"params": jax.random.normal(k, (3, 4)), "slots": jnp.zeros((5, 5))}  # noqa: E731
    key = jax.random.PRNGKey(0)
    out = compiling.compile_once(fn, key)(key)
    compiling.compile_once(fn, key, drawn=lambda o: o["params"])
    assert seen == [12 + 25, 12] and out["params"].shape == (3, 4)


@pytest.mark.parametrize("limit", [0, 10**9], ids=["level1", "level0"])
def test_a_train_state_starts_from_the_variables_zoo_init_gives(monkeypatch, limit):
    """Both initialisations choose the optimisation level by the model's variables (a train state's
    optimizer slots do not count), so that the same seed gives the same values to the last bit."""
    import optax  # noqa: PLC0415

    import zoo  # noqa: PLC0415
    from train import step  # noqa: PLC0415

    monkeypatch.setattr(compiling, "FAST_COMPILE_MAX_VALUES", limit)
    model = zoo.create("lenet5", num_classes=10)
    rng = jax.random.PRNGKey(3)
    state = step.create_state(model, optax.sgd(0.1, momentum=0.9), rng=rng, input_shape=(28, 28, 1))
    variables = compiling.init(model, (28, 28, 1), rng=jax.random.split(rng)[0])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state.params,
                 variables["params"])


def test_a_program_compiled_ahead_is_not_compiled_again_by_its_first_call(compile_log):
    fn = jax.jit(lambda x, y: jnp.tanh(x) @ y + 1.0)
    x, y = np.ones((8, 4), np.float32), np.full((4, 3), 0.5, np.float32)
    ahead = compiling.Ahead(fn, lambda: (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(y.shape, y.dtype)))
    assert ahead.wait() > 0.0
    assert [t for t, _ in compile_log()] == ["zoo-compile-ahead"]
    np.testing.assert_allclose(fn(x, y), np.tanh(x) @ y + 1.0, rtol=1e-6)
    assert len(compile_log()) == 1                                   # the first call compiled nothing


def test_a_compile_ahead_that_fails_leaves_the_error_to_the_first_call(compile_log):
    fn = jax.jit(lambda x: x @ x)
    ahead = compiling.Ahead(fn, lambda: (jax.ShapeDtypeStruct((2, 3), np.float32),))   # (2, 3) @ (2, 3): refused
    assert ahead.wait() is None and compile_log() == []
    with pytest.raises(TypeError, match="dot_general requires contracting dimensions to have the same shape"):
        fn(np.ones((2, 3), np.float32))


def test_the_collector_is_held_while_a_step_is_traced_and_released_after():
    """``gc_paused``: off inside (every thread's holders counted), back on when the last one leaves,
    also through an exception; left off when it was off before."""
    import gc  # noqa: PLC0415
    import threading  # noqa: PLC0415

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other():
        with compiling.gc_paused():
            inside.set()
            release.wait(60)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(60) and not gc.isenabled()
        with pytest.raises(RuntimeError, match="traced"):
            with compiling.gc_paused():
                raise RuntimeError("traced")
        assert not gc.isenabled()                                       # the other thread still holds it
    finally:
        release.set()
        thread.join(60)
    assert gc.isenabled()
    gc.disable()
    try:
        with compiling.gc_paused():
            pass
        assert not gc.isenabled()                                       # the user's choice stands
    finally:
        gc.enable()
