"""Trials side by side: grouping by structure, and trial i of a vmapped group ending exactly where
its config trained alone by the project's train step (``setup.Run.compile_train``, what ``fit`` runs)
ends, from the same initial state on the same batches."""
import numpy as np
import pytest

from helpers import quick


def _config(**overrides):
    return quick(**{"batch_size": 16, "num_epochs": 3.0, **overrides})


def _members(base, values_list):
    from train.search.group import Member

    out = []
    for i, values in enumerate(values_list):
        c = base.copy_and_resolve_references()
        c.unlock()
        c.update_from_flattened_dict(values)
        out.append(Member(i, values, c))
    return out


def _batches(shape, n, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((batch, *shape)).astype(np.float32),
             "label": rng.integers(0, 10, batch).astype(np.int32), "mask": np.ones(batch, np.float32)}
            for _ in range(n)]


def _make(config, shape, inject=()):
    from train import parallel, setup

    plan = parallel.make_plan("shard_map", 1)
    return setup.make(config, plan=plan, model_kwargs=setup.model_kwargs(config, 10), input_shape=shape,
                      steps_per_epoch=2, total_steps=6, inject=inject)


def alone(config, shape, batches):
    """The state of ``config`` trained alone on ``batches`` by the project's compiled step."""
    from train import parallel

    run = _make(config, shape)
    state, fn = parallel.replicate(run.fresh_state(), run.plan), run.compile_train()
    for b in batches:
        state, _ = fn(state, parallel.put_batch(b, run.plan))
    return parallel.unreplicate(state, run.plan)


def side_by_side(members, shape, batches, chunk):
    """The host states (leading trial axis) of ``members`` trained as one group on ``batches``."""
    from train import parallel
    from train.search import group

    fields = group.vmapped(members)
    g = group.Group(_make(members[0].config, shape, group.injected(fields)), members, fields, chunk)
    plan = g.run.plan
    states, values = parallel.put_trials(g.initial_state(), plan), parallel.put_trials(g.values(), plan)
    fn, _ = g.compile(states, values, parallel.put_batch(batches[0], plan))
    for b in batches:
        states, metrics = fn(states, parallel.put_batch(b, plan), values)
    return g, parallel.get_trials(states, plan), parallel.get_trials(metrics, plan)


def assert_same_as_alone(members, shape, chunk, steps=3):
    import jax

    batches = _batches(shape, steps)
    g, states, metrics = side_by_side(members, shape, batches, chunk)
    assert metrics["loss"].shape == (len(members),)
    for i, m in enumerate(members):
        ref = alone(m.config, shape, batches)
        for name in ("params", "batch_stats", "ema_params"):
            got, want = jax.tree.map(lambda x: x[i], getattr(states, name)), getattr(ref, name)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
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
    members = _members(_config(), [{**lr, "optimizer.learning_rate": v, "optimizer.name": n}
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
    assert_same_as_alone(_members(base, values), (28, 28, 1), chunk)


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
    assert_same_as_alone(_members(base, values), (64, 64, 3), None, steps=3)


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
