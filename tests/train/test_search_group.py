"""Trials side by side: grouping by structure, and trial i of a vmapped group ending exactly where
its config trained alone by the project's train step (``setup.Run.compile_train``, what ``fit`` runs)
ends, from the same initial state on the same batches."""
import numpy as np
import pytest

from helpers import quick
from search_helpers import random_batches, search_members, trained_alone, trained_side_by_side


def _config(**overrides):
    return quick(**{"batch_size": 16, "num_epochs": 3.0, **overrides})


def assert_same_as_alone(members, shape, chunk, steps=3, atol=1e-6):
    import jax

    batches = random_batches(shape, steps)
    g, states, metrics = trained_side_by_side(members, shape, batches, chunk)
    assert metrics["loss"].shape == (len(members),)
    for i, m in enumerate(members):
        ref = trained_alone(m.config, shape, batches)
        for name in ("params", "batch_stats", "ema_params", "ema_batch_stats"):
            got, want = jax.tree.map(lambda x: x[i], getattr(states, name)), getattr(ref, name)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol), got, want)
        # (atol as tests/train/test_parallel.py: Adam magnifies summation-order noise on near-zero gradients)
        # saved alone-structured, the trial's state is the one train.fit would restore
        single = g.single_state(states, i)
        assert jax.tree.structure(single) == jax.tree.structure(ref)
        np.testing.assert_allclose(single.opt_state.hyperparams["learning_rate"],
                                   ref.opt_state.hyperparams["learning_rate"], rtol=1e-6)


def test_structure_separates_what_the_step_cannot_take_as_input():
    from train.search.group import partition, structure

    lr = {"optimizer.learning_rate": 0.1, "optimizer.name": "sgd", "optimizer.weight_decay": 1e-4}
    assert structure(lr) == structure({**lr, "optimizer.learning_rate": 0.01, "optimizer.weight_decay": 3e-4})
    assert structure(lr) != structure({**lr, "optimizer.name": "adam"})          # optimizer kind
    assert structure(lr) != structure({**lr, "optimizer.weight_decay": 0.0})     # zero: no decay transform
    members = search_members(_config(), [{**lr, "optimizer.learning_rate": v, "optimizer.name": n}
                                   for v, n in [(0.1, "sgd"), (0.2, "adam"), (0.3, "sgd"), (0.4, "sgd")]])
    groups = partition(members, cap=2)
    assert [[m.number for m in g] for g in groups] == [[0, 2], [3], [1]]


@pytest.mark.parametrize("chunk", [2])
def test_bn_trials_end_where_each_config_alone_ends(chunk):
    """LeNet-5 with BatchNorm, SGD with momentum: three trials differing in learning rate, weight
    decay, momentum, label smoothing and EMA decay, mapped two at a time (a vmapped chunk of two and
    a remainder); each ends with the parameters, BN statistics and EMA of its config alone."""
    base = _config(**{"model_kwargs.norm": "batch", "optimizer.name": "sgd", "optimizer.ema_decay": 0.9,
                      "schedule.warmup_epochs": 1.0})
    values = [{"optimizer.learning_rate": lr, "optimizer.weight_decay": wd, "optimizer.momentum": mom,
               "label_smoothing": ls, "optimizer.ema_decay": ema}
              for lr, wd, mom, ls, ema in [(0.1, 1e-3, 0.9, 0.0, 0.9), (0.02, 5e-4, 0.5, 0.1, 0.99),
                                           (0.3, 2e-3, 0.8, 0.2, 0.5)]]
    assert_same_as_alone(search_members(base, values), (28, 28, 1), chunk)


@pytest.mark.integration
def test_dropout_trials_end_where_each_config_alone_ends():
    """AlexNet at 64x64 (two dropout layers, no BatchNorm), SGD: trials differing in learning rate,
    dropout rate and momentum, all vmapped at once; each trial draws the dropout masks of its config
    alone (the same key, the same module names) and ends with its parameters. (MobileNet at 32x32
    would not do: its 1x1 maps make training so ill-conditioned that a 1e-7 perturbation of the
    initial parameters moves them by 2e-4 after one step, alone as well as in a group.)"""
    base = quick(**{"model": "alexnet", "data.name": "synthetic", "data.image_size": 64, "num_epochs": 3.0,
                    "batch_size": 8, "optimizer.name": "sgd", "optimizer.weight_decay": 1e-4})
    values = [{"optimizer.learning_rate": lr, "model_kwargs.dropout": p, "optimizer.momentum": m}
              for lr, p, m in [(0.01, 0.5, 0.9), (0.02, 0.2, 0.5)]]
    # atol 1e-5: on CPU a group's convolutions are im2col matmuls, alone they are Eigen convolutions
    # (zoo.compiling.step_compile_options); AlexNet's 3x3x256x256 kernels then differ by up to 3.4e-6
    # after 3 steps (2026-11-30), summation order alone
    assert_same_as_alone(search_members(base, values), (64, 64, 3), None, steps=3, atol=1e-5)


def test_memory_check_gives_the_group_size_that_fits():
    from types import SimpleNamespace as NS

    from train.search import group

    stats = NS(argument_size_in_bytes=6 << 20, output_size_in_bytes=6 << 20, temp_size_in_bytes=4 << 20,
               alias_size_in_bytes=0)
    compiled = NS(memory_analysis=lambda: stats)                     # 16 MiB for 8 trials: 2 MiB each
    g = NS(padded=lambda: 8, run=NS(plan=NS(trial_devices=2, devices=[None])))
    group.check_memory(compiled, g, 16 << 20)
    with pytest.raises(group.GroupTooLargeError, match=r"^a group of 8 trials needs 0\.02 GiB per device, more than the "
                                                        r"0\.01 GiB available; 6 trials fit: use --parallel-trials 6$"):
        group.check_memory(compiled, g, 13 << 20)                   # 6.5 trials: 6 (a multiple of 2 trial devices)


def test_host_memory_is_what_the_kernel_can_give_not_only_the_free_pages(tmp_path):
    """/proc/meminfo (proc(5)): MemAvailable counts the page cache the kernel reclaims on demand, so a
    machine that has read files for a while still offers a group its RAM though MemFree is small."""
    from train.search import group

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:          900000 kB\n"
                       "MemAvailable:   23000000 kB\nBuffers:          100000 kB\n")
    assert group.host_available_bytes(str(meminfo)) == 23000000 * 1024
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:          900000 kB\n")  # kernels before 3.14
    assert group.host_available_bytes(str(meminfo)) > 0                                # the free pages
    assert group.host_available_bytes(str(tmp_path / "missing")) > 0


@pytest.mark.integration
def test_trials_spread_over_devices_end_where_each_config_alone_ends():
    """4 simulated devices: a 2-D mesh of 2 trial rows x 2 data devices (each trial data-parallel over
    its row), and the trial axis vmapped inside pmap over 2 devices: each trial ends with the
    parameters and BN statistics of its config trained alone on one device."""
    from helpers import run_worker

    out = run_worker("search_mesh", devices=4)
    assert out["trial_sharding"] == "P('trials',)"
    for plan in ("mesh_2x2", "pmap_2"):
        assert max(out[plan]) < 1e-5, out
