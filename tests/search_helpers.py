"""Test helpers of the hyperparameter search (train.search): trials as group members, random batches,
and the same trials trained alone or side by side as one search group by the project's compiled step."""


def search_members(base, values_list):
    """``train.search.group.Member`` s: trial i has ``values_list[i]`` (``{config path: value}``) set on ``base``."""
    from train.search.group import Member

    out = []
    for i, values in enumerate(values_list):
        c = base.copy_and_resolve_references()
        c.unlock()
        c.update_from_flattened_dict(values)
        out.append(Member(i, values, c))
    return out


def random_batches(shape, n, batch=16, seed=0):
    """``n`` global batches of normal images ``(batch, *shape)`` and labels of 10 classes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((batch, *shape)).astype(np.float32),
             "label": rng.integers(0, 10, batch).astype(np.int32), "mask": np.ones(batch, np.float32)}
            for _ in range(n)]


def search_run(config, shape, inject=(), plan=None):
    """``train.setup.make`` of ``config`` without data: 2 steps per epoch, 6 in all (LeNet's 10 classes)."""
    from train import parallel, setup

    plan = plan or parallel.make_plan("shard_map", 1)
    return setup.make(config, plan=plan, model_kwargs=setup.model_kwargs(config, 10), input_shape=shape,
                      steps_per_epoch=2, total_steps=6, inject=inject)


def trained_alone(config, shape, batches, plan=None):
    """The host state of ``config`` trained alone on ``batches`` by the project's compiled step (fit's)."""
    from train import parallel

    run = search_run(config, shape, plan=plan)
    state, fn = parallel.replicate(run.fresh_state(), run.plan), run.compile_train()
    for b in batches:
        state, _ = fn(state, parallel.put_batch(b, run.plan))
    return parallel.unreplicate(state, run.plan)


def trained_side_by_side(members, shape, batches, chunk=None, plan=None):
    """``(group, host states, host metrics)``: ``members`` trained as one search group on ``batches``
    (leading trial axis on states and metrics)."""
    from train import parallel
    from train.search import group

    fields = group.vmapped(members)
    g = group.Group(search_run(members[0].config, shape, group.injected(fields), plan), members, fields, chunk)
    plan = g.run.plan
    states, values = parallel.put_trials(g.initial_state(), plan), parallel.put_trials(g.values(), plan)
    fn, _ = g.compile(states, values, parallel.put_batch(batches[0], plan))
    for b in batches:
        states, metrics = fn(states, parallel.put_batch(b, plan), values)
    return g, parallel.get_trials(states, plan), parallel.get_trials(metrics, plan)
