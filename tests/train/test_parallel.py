"""One per-device train step, exact under any device count, pmap and shard_map, and across
processes. Device counts are simulated (XLA_FLAGS) in subprocesses, see tests/workers/."""
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import WORKERS, child_env, run_worker

RTOL = 1e-5


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same_state(a, b, rtol=RTOL):
    assert a.keys() == b.keys()
    assert any(k.startswith("batch_stats/") for k in a), "the model must have BatchNorm statistics"
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def equivalence_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    losses = run_worker("parallel_equivalence", out, devices=8)
    return out, losses


@pytest.mark.integration
@pytest.mark.parametrize("k", [2, 4, 8])
def test_same_state_on_1_2_4_8_devices(equivalence_run, k):
    out, losses = equivalence_run
    _assert_same_state(_load(out / "shard_map_1.npz"), _load(out / f"shard_map_{k}.npz"))
    assert losses["shard_map_1"] == pytest.approx(losses[f"shard_map_{k}"], rel=RTOL)


@pytest.mark.integration
def test_pmap_and_shard_map_give_the_same_state(equivalence_run):
    out, _ = equivalence_run
    _assert_same_state(_load(out / "pmap_8.npz"), _load(out / "shard_map_8.npz"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_two_processes_equal_one_process_with_two_devices(equivalence_run, tmp_path):
    out, _ = equivalence_run
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKERS / "multiprocess.py"), str(pid), str(port), str(tmp_path),
                               "shard_map"], env=child_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for pid in (0, 1)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=600)
        finally:
            p.kill()
        assert p.returncode == 0, err[-4000:]
    one_process = _load(out / "shard_map_2.npz")
    for pid in (0, 1):
        _assert_same_state(one_process, _load(tmp_path / f"process{pid}.npz"))


def test_batch_not_divisible_by_devices_names_both_numbers():
    from train import parallel
    plan = parallel.Plan("shard_map", tuple(range(8)))  # stand-in devices: only the count matters
    with pytest.raises(ValueError, match=r"12.*8"):
        parallel.check_batch(12, plan)


def test_unknown_parallelism():
    from train import parallel
    with pytest.raises(ValueError, match="parallelism.*shard_map"):
        parallel.make_plan("dp")


def test_tracing_a_step_holds_the_collector():
    """The train / eval steps' bodies (``train.parallel.compile_step``) run with the collector held."""
    import gc  # noqa: PLC0415

    from train import parallel  # noqa: PLC0415

    seen = []
    plan = parallel.make_plan("shard_map", 1)
    step = parallel.compile_step(lambda s, b: (seen.append(gc.isenabled()), s + b.sum())[1], plan,
                                 donate_state=False)
    assert float(step(np.float32(1), np.ones((2, 3), np.float32))) == 7.0
    assert seen == [False] and gc.isenabled()
