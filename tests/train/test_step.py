"""train.step on one device: the train step, the eval step over variables, loss scaling, frozen
statistics, the finiteness check, auxiliary classifiers' losses (multi-device equivalence is in
test_parallel.py)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zoo
from configs import default
from train import optim, parallel, step
from zoo.auxiliary import aux_output, runs_aux

PLAN = parallel.make_plan("shard_map", 1)


def _batch(n, shape=(28, 28, 1), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((n, *shape)).astype(np.float32),
            "label": rng.integers(0, classes, n).astype(np.int32), "mask": np.ones(n, np.float32)}


@functools.lru_cache(maxsize=None)
def _initial_state(model, tx, input_shape, ema):
    return step.create_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=input_shape, ema=ema)


@functools.lru_cache(maxsize=None)
def _compiled_train_step(model, tx, cfg):
    return parallel.compile_step(functools.partial(step.train_step, model=model, tx=tx, cfg=cfg), PLAN)


def _run(model, tx, batches, cfg=step.StepConfig(), input_shape=(28, 28, 1), ema=False):
    """Train from the seeded initial state on ``batches``. Initial states and compiled steps are
    shared between the tests that use the same model, optimizer and step config (equal models,
    the same ``_optimizer`` object); a config holding a statistics mask is compiled for its test."""
    state = _initial_state(model, tx, input_shape, ema)
    mask = cfg.stats_trainable
    train = (_compiled_train_step(model, tx, cfg) if mask is None else
             parallel.compile_step(functools.partial(step.train_step, model=model, tx=tx, cfg=cfg), PLAN))
    state = parallel.replicate(state, PLAN)
    history = []
    for b in batches:
        state, m = train(state, parallel.put_batch(b, PLAN))
        history.append(parallel.unreplicate(m, PLAN))
    return parallel.unreplicate(state, PLAN), history


@functools.lru_cache(maxsize=None)
def _optimizer(**overrides):
    c = default.get_config()
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    c.schedule.name = "constant"
    for k, v in overrides.items():
        c.optimizer[k] = v
    return optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)[0]


@pytest.mark.integration
def test_gradient_accumulation_equals_one_big_step():
    """k micro-batches of b, accumulated, == one step on k*b (LeNet-5: no BatchNorm)."""
    model = zoo.create("lenet5", axis_name=parallel.AXIS)
    k, b = 4, 8
    big = _batch(k * b)
    micro = [{key: v[i * b:(i + 1) * b] for key, v in big.items()} for i in range(k)]
    one, _ = _run(model, _optimizer(), [big])
    acc, hist = _run(model, _optimizer(accumulate_steps=k), micro)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7), one.params, acc.params)
    assert [float(h["learning_rate"]) for h in hist] == pytest.approx([0.05] * k)


@pytest.mark.integration
def test_non_finite_loss_is_reported_and_never_enters_the_state():
    model = zoo.create("lenet5", axis_name=parallel.AXIS)
    good, bad = _batch(8), _batch(8, seed=1)
    bad["image"][0, 0, 0, 0] = np.nan
    state, hist = _run(model, _optimizer(), [good, bad])
    assert bool(hist[0]["finite"]) and not bool(hist[1]["finite"])
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
    ref, _ = _run(model, _optimizer(), [good])
    jax.tree.map(np.testing.assert_array_equal, ref.params, state.params)  # the bad step changed nothing
    assert int(state.step) == 2


def test_metrics_weighted_by_real_examples():
    """Padded examples (mask 0) change neither the loss nor the gradient."""
    model = zoo.create("lenet5", axis_name=parallel.AXIS)
    real = _batch(6)
    padded = {k: np.concatenate([v, v[:2] * 0 + (7 if k != "mask" else 0)]) for k, v in real.items()}
    s1, h1 = _run(model, _optimizer(), [real])
    s2, h2 = _run(model, _optimizer(), [padded])
    assert float(h1[0]["loss"]) == pytest.approx(float(h2[0]["loss"]), rel=1e-6)
    assert float(h2[0]["examples"]) == 6
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7), s1.params, s2.params)


@pytest.mark.integration
def test_eval_counts_every_example_once():
    model = zoo.create("lenet5")
    tx = optax.sgd(0.1)
    state = parallel.replicate(step.create_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(28, 28, 1)), PLAN)
    ev = parallel.compile_step(functools.partial(step.eval_step, model=model, cfg=step.StepConfig()), PLAN,
                               out_sharded=(False, True), donate_state=False)
    b = _batch(10)
    b["mask"][7:] = 0  # last 3 are padding
    sums, per_ex = ev(step.eval_variables(state), parallel.put_batch(b, PLAN))
    sums = parallel.unreplicate(sums, PLAN)
    assert float(sums["count"]) == 7
    logits = model.apply({"params": jax.tree.map(np.asarray, parallel.unreplicate(state.params, PLAN))}, b["image"])
    pred = np.asarray(logits).argmax(-1)
    assert float(sums["correct1"]) == (pred == b["label"])[:7].sum()
    np.testing.assert_array_equal(parallel.fetch(per_ex, PLAN)["pred"], pred)


def test_label_smoothing_matches_formula():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    cfg = step.StepConfig(label_smoothing=0.3)
    logp = jax.nn.log_softmax(logits[0])
    target = np.array([1 - 0.3 + 0.1, 0.1, 0.1])  # (1 - a) one_hot + a / K
    assert float(step.per_example_loss(logits, jnp.array([0]), cfg)[0]) == pytest.approx(float(-(target * logp).sum()))


def test_mse_loss_on_one_hot():
    logits = jnp.array([[0.0, 0.0]])
    cfg = step.StepConfig(loss="mse")
    assert float(step.per_example_loss(logits, jnp.array([1]), cfg)[0]) == pytest.approx((0.5 ** 2 + 0.5 ** 2) / 2)


def test_bad_step_config():
    with pytest.raises(ValueError, match="loss='hinge'"):
        step.StepConfig(loss="hinge")
    with pytest.raises(ValueError, match="label_smoothing"):
        step.StepConfig(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"^label_smoothing=0.3: smooths loss='cross_entropy' only"):
        step.StepConfig(loss="mse", label_smoothing=0.3)   # was ignored without a word
    step.StepConfig(loss="mse", label_smoothing=0.0)


@pytest.mark.integration
def test_ema_tracks_params():
    model = zoo.create("lenet5", axis_name=parallel.AXIS)
    state, _ = _run(model, _optimizer(), [_batch(8)], cfg=step.StepConfig(ema_decay=0.5), ema=True)
    init = step.create_state(model, optax.sgd(0.1), rng=jax.random.PRNGKey(0), input_shape=(28, 28, 1))
    expected = jax.tree.map(lambda p0, p1: 0.5 * p0 + 0.5 * p1, init.params, state.params)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7), expected, state.ema_params)


@pytest.mark.integration
@pytest.mark.parametrize("warmup", [False, True])
def test_ema_averages_params_and_batchnorm_statistics(warmup):
    """The EMA holds the BatchNorm statistics beside the parameters (timm's ModelEmaV2, torchvision's
    use_buffers=True) and evaluation takes both; with warmup the first update's decay is TensorFlow's
    min(decay, (1 + t) / (10 + t)) at t = 1, i.e. 2 / 11."""
    model = zoo.resnet.CifarResNet(depth=8, axis_name=parallel.AXIS)
    b = _batch(8, shape=(8, 8, 3))
    init = step.create_state(model, optax.sgd(0.1), rng=jax.random.PRNGKey(0), input_shape=(8, 8, 3), ema=True)
    cfg = step.StepConfig(ema_decay=0.5, ema_warmup=warmup)
    state, _ = _run(model, optax.sgd(0.1), [b], cfg=cfg, input_shape=(8, 8, 3), ema=True)
    d = 2.0 / 11.0 if warmup else 0.5
    for got, first, trained in ((state.ema_params, init.params, state.params),
                                (state.ema_batch_stats, init.batch_stats, state.batch_stats)):
        expected = jax.tree.map(lambda p0, p1: d * p0 + (1 - d) * p1, first, trained)
        jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7), expected, got)
    assert not np.allclose(init.batch_stats["bn1"]["mean"], state.batch_stats["bn1"]["mean"])
    used = step.eval_variables(state)
    assert used["params"] is state.ema_params and used["batch_stats"] is state.ema_batch_stats
    assert step.eval_variables(state, use_ema=False)["batch_stats"] is state.batch_stats


def test_ema_warmup_is_tensorflows_num_updates_decay():
    for t in (0, 1, 9, 100, 10_000, 10**6):
        assert float(optim.ema_decay_at(0.9999, t, warmup=True)) == pytest.approx(min(0.9999, (1 + t) / (10 + t)))
    assert optim.ema_decay_at(0.9999, 1, warmup=False) == 0.9999


def test_float16_dynamic_loss_scale_halves_on_overflow():
    ls = step.LossScale.create(initial=8.0, period=2)
    ls = ls.adjust(jnp.asarray(False))
    assert float(ls.scale) == 4.0 and int(ls.good_steps) == 0
    ls = ls.adjust(jnp.asarray(True)).adjust(jnp.asarray(True))
    assert float(ls.scale) == 8.0


@pytest.mark.integration
def test_frozen_batch_stats_stay_put():
    model = zoo.resnet.CifarResNet(depth=8, axis_name=parallel.AXIS)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
    mask = optim.trainable_mask(shapes["batch_stats"], "layer1", ())  # regex: freeze stage 1
    b = _batch(8, shape=(8, 8, 3))
    init = step.create_state(model, optax.sgd(0.1), rng=jax.random.PRNGKey(0), input_shape=(8, 8, 3))
    state, _ = _run(model, optax.sgd(0.1), [b], cfg=step.StepConfig(stats_trainable=mask), input_shape=(8, 8, 3))
    np.testing.assert_array_equal(init.batch_stats["layer1_0"]["bn1"]["mean"], state.batch_stats["layer1_0"]["bn1"]["mean"])
    assert not np.allclose(init.batch_stats["bn1"]["mean"], state.batch_stats["bn1"]["mean"])


def test_all_finite_on_host_arrays_and_inside_jit():
    ok = {"w": np.ones((2, 3), np.float32), "step": np.int32(7), "rng": np.zeros(2, np.uint32)}
    bad = {**ok, "b": np.array([0.0, np.inf], np.float32)}
    assert step.all_finite(ok) and not step.all_finite(bad) and not step.all_finite({"x": np.float32("nan")})
    assert isinstance(step.all_finite(ok), np.bool_)  # host arrays: no device round trip
    traced = jax.jit(step.all_finite)
    assert bool(traced(ok)) and not bool(traced(bad)) and step.all_finite({})


@pytest.mark.parametrize("grads, expected", [
    ({"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}, True),
    ({"w": np.ones((2, 3), np.float32), "b": np.array([0.0, np.nan, 1.0], np.float32)}, False),
    ({"w": np.full((2, 3), -np.inf, np.float32), "b": np.zeros(3, np.float32)}, False),
    ({"w": np.full((2, 3), 1e30, np.float32), "b": np.zeros(3, np.float32)}, True),   # squares overflow float32
    ({"w": np.full((2, 3), 1e30, np.float32), "b": np.array([np.inf], np.float32)}, False),
    ({"big": np.full(step.SMALL_LEAF + 1, 1e30, np.float32), "b": np.zeros(3, np.float32)}, True),
    ({"big": np.r_[np.full(step.SMALL_LEAF, 1e30), np.nan].astype(np.float32), "b": np.zeros(3, np.float32)}, False),
    ({"big": np.full(step.SMALL_LEAF + 1, 1e30, np.float32), "b": np.array([1e30, -np.inf], np.float32)}, False),
], ids=["finite", "nan", "minus_inf", "squares_overflow", "overflow_and_inf", "large_leaf_overflow", "large_leaf_nan",
        "large_leaf_overflow_small_inf"])
def test_grads_finite_from_the_norm_equals_the_elementwise_check(grads, expected):
    """Inside the compiled step the check starts from the squared norm; a finite gradient whose squares
    overflow float32 must still count as finite (and the step be applied), in a small leaf (checked in
    the concatenated vector) or a large one (checked on its own)."""
    fn = jax.jit(lambda g: step.grads_finite(g, step.sum_of_squares(g)))
    assert bool(fn(grads)) is expected is bool(step.all_finite(grads))


def test_sum_of_squares_is_the_global_norm_squared_over_small_and_large_leaves():
    """Against a float64 NumPy sum; the small leaves (any shape, any count) go into one vector, the
    large ones stay whole."""
    rng = np.random.default_rng(0)
    tree = {"conv": {"kernel": rng.standard_normal((3, 3, 8, 16), np.float32), "bias": rng.standard_normal(16, np.float32)},
            "big": rng.standard_normal((step.SMALL_LEAF + 5,), np.float32), "scalar": np.float32(-2.5),
            "bn": [rng.standard_normal(7, np.float32), rng.standard_normal(7, np.float32)]}
    expected = sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree))
    got = jax.jit(step.sum_of_squares)(tree)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    np.testing.assert_allclose(float(optax.global_norm(tree)) ** 2, expected, rtol=1e-6)
    parts = step.reduction_parts(tree)
    assert [p.shape for p in parts] == [(3 * 3 * 8 * 16 + 16 + 1 + 7 + 7,), (step.SMALL_LEAF + 5,)]
    assert step.reduction_parts({}) == [] and float(step.sum_of_squares({})) == 0.0


def test_a_finite_loss_with_a_non_finite_gradient_never_enters_the_state():
    """A parameter whose gradient is NaN (its loss term is finite): the whole update is skipped."""
    class Sqrt(nn.Module):  # d/dw sqrt(w) at w = 0 is inf; sqrt(0) = 0 keeps the loss finite
        @nn.compact
        def __call__(self, x, train=False):
            w = self.param("w", nn.initializers.zeros, (1,))
            return nn.Dense(10)(x.reshape(x.shape[0], -1)) + jnp.sqrt(w)
    state, hist = _run(Sqrt(), optax.sgd(0.1), [_batch(4, shape=(2, 2, 1))], input_shape=(2, 2, 1))
    assert np.isfinite(float(hist[0]["loss"])) and not bool(hist[0]["finite"])
    init = _initial_state(Sqrt(), optax.sgd(0.1), (2, 2, 1), False)
    jax.tree.map(np.testing.assert_array_equal, init.params, state.params)
    assert int(state.step) == 1


def test_eval_variables_pick_the_ema_and_leave_out_empty_statistics():
    state = step.TrainState(step=np.int32(0), params={"w": 1}, batch_stats={}, opt_state=None, rng=None,
                            ema_params={"w": 2})
    assert step.eval_variables(state) == {"params": {"w": 2}}
    assert step.eval_variables(state, use_ema=False) == {"params": {"w": 1}}
    raw = {"params": {"w": 1}, "batch_stats": {"bn": 3}, "ema_params": None}  # a restored checkpoint state
    assert step.eval_variables(raw) == {"params": {"w": 1}, "batch_stats": {"bn": 3}}
    older = {"params": {"w": 1}, "batch_stats": {"bn": 3}, "ema_params": {"w": 2}}  # before the statistics' EMA
    assert step.eval_variables(older) == {"params": {"w": 2}, "batch_stats": {"bn": 3}}
    now = {**older, "ema_batch_stats": {"bn": 4}}
    assert step.eval_variables(now) == {"params": {"w": 2}, "batch_stats": {"bn": 4}}
    assert step.eval_variables(now, use_ema=False) == {"params": {"w": 1}, "batch_stats": {"bn": 3}}


# ---------------------------------------------------------------------- auxiliary classifiers

class _AuxHead(nn.Module):
    @nn.compact
    def __call__(self, h):
        return aux_output(self, nn.Dense(10, name="fc")(h))


class _TwoHeads(nn.Module):
    """A trunk, a classifier and an auxiliary classifier on the trunk, following the zoo.auxiliary contract
    as GoogLeNet and Inception v3 do (the step only sees the contract)."""

    aux_logits: bool = True
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):  # x: (B, 28, 28, 1)
        h = nn.relu(nn.Dense(16, name="trunk")(x.reshape(x.shape[0], -1)))
        if runs_aux(self, train):
            _AuxHead(name="aux")(h)
        return nn.Dense(10, name="fc")(h)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_aux_loss_is_the_weighted_cross_entropy_of_the_aux_classifier():
    model = _TwoHeads()
    b = _batch(8)
    b["mask"][6:] = 0
    init = _initial_state(model, _optimizer(), (28, 28, 1), False)
    _, hist = _run(model, _optimizer(), [b], cfg=step.StepConfig(aux_loss_weight=0.4))
    p = jax.tree.map(np.asarray, init.params)
    h = np.maximum(b["image"].reshape(8, -1) @ p["trunk"]["kernel"] + p["trunk"]["bias"], 0)   # by hand, in numpy
    ce = lambda logits: -_log_softmax(logits)[np.arange(8), b["label"]]
    aux = ce(h @ p["aux"]["fc"]["kernel"] + p["aux"]["fc"]["bias"])
    main = ce(h @ p["fc"]["kernel"] + p["fc"]["bias"])
    assert float(hist[0]["aux_loss"]) == pytest.approx(0.4 * aux[:6].mean(), rel=1e-5)
    assert float(hist[0]["loss"]) == pytest.approx(main[:6].mean(), rel=1e-5)   # the main classifier's, as eval


@pytest.mark.integration
def test_aux_weight_zero_gives_the_plain_loss():
    b = _batch(8)
    plain, _ = _run(_TwoHeads(aux_logits=False), _optimizer(), [b])
    zero, _ = _run(_TwoHeads(), _optimizer(), [b], cfg=step.StepConfig(aux_loss_weight=0.0))
    weighted, _ = _run(_TwoHeads(), _optimizer(), [b], cfg=step.StepConfig(aux_loss_weight=0.4))
    assert "aux" not in plain.params and "aux" in zero.params
    for name in ("trunk", "fc"):   # same initial values (Flax seeds parameters by path)
        jax.tree.map(np.testing.assert_array_equal, plain.params[name], zero.params[name])
    assert not np.allclose(plain.params["trunk"]["kernel"], weighted.params["trunk"]["kernel"])


def test_a_model_without_aux_classifiers_takes_the_same_path(monkeypatch):
    """The auxiliary term is never traced for a model that sows no auxiliary logits: the step's program
    does not depend on aux_loss_weight, and its metrics are the usual ones."""
    model = zoo.create("lenet5", axis_name=parallel.AXIS)
    tx = _optimizer()
    state = step.abstract_state(model, tx, input_shape=(28, 28, 1))
    b = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _batch(4))

    def program(weight):
        fn = functools.partial(step.train_step, model=model, tx=tx, cfg=step.StepConfig(aux_loss_weight=weight))
        return jax.make_jaxpr(fn, axis_env=[(parallel.AXIS, 1)], return_shape=True)(state, b)

    monkeypatch.setattr(step, "aux_loss_sum", lambda *a, **k: pytest.fail("aux term traced"))
    (j0, (_, metrics)), (j1, _) = program(0.0), program(0.4)
    assert str(j0) == str(j1) and "aux_loss" not in metrics


def test_bad_aux_loss_weight():
    with pytest.raises(ValueError, match=r"^aux_loss_weight=-0\.3: must be a number >= 0$"):
        step.StepConfig(aux_loss_weight=-0.3)
