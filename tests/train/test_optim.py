"""train/optim.py: optimizers, weight-decay and freeze masks, accumulation, EMA."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from helpers import lr_at
from train import optim


def config(**overrides):
    """default config with dotted overrides: config(**{"optimizer.name": "adam"})."""
    c = default.get_config()
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.0
    c.schedule.name = "constant"
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def tiny_params(seed=0):
    """A stem conv + BN, a second block, and an 'fc' head: kernels (ndim > 1), biases and BN vectors."""
    rng = np.random.default_rng(seed)   # numpy: drawing them compiles nothing (the module builds ALL at import)
    n = lambda shape: jnp.asarray(rng.standard_normal(shape, np.float32))
    return {
        "conv1": {"kernel": n((3, 3, 2, 4))},
        "bn1": {"scale": 1.0 + 0.1 * n((4,)), "bias": n((4,))},
        "layer1_0": {"conv1": {"kernel": n((3, 3, 4, 4)), "bias": n((4,))}},
        "fc": {"kernel": n((4, 3)), "bias": n((3,))},
    }


def grads_like(params, seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape, np.float32)), params)


def run(tx, params, grads_seq, jit=False):
    """Apply tx for each gradient tree in grads_seq; return params, state. Eager by default: on these
    tiny trees that is faster than compiling (MultiSteps' lax.cond is faster jitted)."""
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    for g in grads_seq:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def leaves_with_paths(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def changed(a, b):
    la, lb = leaves_with_paths(a), leaves_with_paths(b)
    return {k for k in la if not np.array_equal(la[k], lb[k])}


ALL = set(leaves_with_paths(tiny_params()))
HEAD = {k for k in ALL if k.startswith("['fc']")}
KERNELS = {k for k in ALL if k.endswith("['kernel']")}


# ----------------------------------------------------------------------------------------- optimizers

def test_unknown_optimizer_names_field_and_allowed():
    with pytest.raises(ValueError, match=r"optimizer\.name='foo'") as e:
        optim.make_optimizer(config(**{"optimizer.name": "foo"}), steps_per_epoch=10, total_steps=100)
    for allowed in optim.OPTIMIZERS:
        assert repr(allowed) in str(e.value)


@pytest.mark.parametrize("overrides, field", [
    ({"optimizer.accumulate_steps": 0}, "optimizer.accumulate_steps"),
    ({"optimizer.nesterov": True}, "optimizer.nesterov"),   # momentum 0
    ({"optimizer.grad_clip_norm": -1.0}, "optimizer.grad_clip_norm"),
    ({"transfer.freeze": "conv(["}, "transfer.freeze"),
    ({"transfer.freeze": "backbone"}, "transfer.freeze"),   # no head given
    ({"transfer.backbone_lr_mult": 0.1}, "transfer.backbone_lr_mult"),  # no head given
])
def test_optimizer_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        optim.make_optimizer(config(**overrides), steps_per_epoch=10, total_steps=100)


@pytest.mark.parametrize("decay", [1.5, 1.0, -0.2])
def test_ema_decay_outside_0_1_is_refused(decay):
    """Once accepted: 1.5 made the evaluated EMA weights garbage, 1.0 froze them at the initial
    parameters, a negative value silently meant no EMA."""
    with pytest.raises(ValueError, match=rf"^optimizer\.ema_decay={decay}: must be in \[0, 1\) \(0: off\)$"):
        optim.make_optimizer(config(**{"optimizer.ema_decay": decay}), steps_per_epoch=10, total_steps=100)
    for fine in (0.0, 0.9999):
        optim.make_optimizer(config(**{"optimizer.ema_decay": fine}), steps_per_epoch=10, total_steps=100)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_builds_and_updates(name):
    c = config(**{"optimizer.name": name, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
                  "optimizer.learning_rate": 0.01})
    tx, schedule = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params = tiny_params()
    new, state = run(tx, params, [grads_like(params, 1), grads_like(params, 2)])
    assert changed(params, new) == ALL
    assert all(np.isfinite(x).all() for x in leaves_with_paths(new).values())
    assert float(optim.current_lr(state)) == pytest.approx(float(schedule(1)))


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_weight_decay_only_on_kernels(name):
    """A zero gradient moves only kernels (biases and BN scale/bias get no decay) - coupled and decoupled."""
    c = config(**{"optimizer.name": name, "optimizer.momentum": 0.9, "optimizer.weight_decay": 0.1})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params = tiny_params()
    new, _ = run(tx, params, [jax.tree.map(jnp.zeros_like, params)])
    assert changed(params, new) == KERNELS


def test_sgd_coupled_weight_decay_value():
    """PyTorch SGD: p <- p - lr * (g + wd * p) for kernels, p - lr * g for the rest."""
    c = config(**{"optimizer.learning_rate": 0.5, "optimizer.weight_decay": 0.1})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params, grads = tiny_params(), grads_like(tiny_params())
    new, _ = run(tx, params, [grads])
    np.testing.assert_allclose(new["fc"]["kernel"], params["fc"]["kernel"] - 0.5 * (grads["fc"]["kernel"]
                               + 0.1 * params["fc"]["kernel"]), rtol=1e-6)
    np.testing.assert_allclose(new["fc"]["bias"], params["fc"]["bias"] - 0.5 * grads["fc"]["bias"], rtol=1e-6)


def test_rmsprop_is_tf_style():
    """ms starts at 1, eps inside the sqrt: first update = -lr * g / sqrt(0.9 + 0.1 g^2 + eps)."""
    c = config(**{"optimizer.name": "rmsprop", "optimizer.learning_rate": 0.1, "optimizer.rms_decay": 0.9,
                  "optimizer.rms_eps": 1e-3, "optimizer.momentum": 0.9})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params, grads = tiny_params(), grads_like(tiny_params())
    new, _ = run(tx, params, [grads])
    g = grads["fc"]["kernel"]
    np.testing.assert_allclose(new["fc"]["kernel"] - params["fc"]["kernel"],
                               -0.1 * g / np.sqrt(0.9 + 0.1 * g ** 2 + 1e-3), rtol=1e-5, atol=1e-7)


@pytest.mark.integration
def test_gradient_clipping_caps_global_norm():
    c = config(**{"optimizer.learning_rate": 1.0, "optimizer.grad_clip_norm": 1.0})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params = tiny_params()
    big = jax.tree.map(lambda g: 10 * g, grads_like(params))
    assert float(optax.global_norm(big)) > 1.0
    new, _ = run(tx, params, [big])
    step = jax.tree.map(lambda a, b: a - b, new, params)
    assert float(optax.global_norm(step)) == pytest.approx(1.0, rel=1e-5)
    small = jax.tree.map(lambda g: 1e-3 * g, grads_like(params))   # under the cap: untouched
    new, _ = run(tx, params, [small])
    np.testing.assert_allclose(new["fc"]["kernel"], params["fc"]["kernel"] - small["fc"]["kernel"], rtol=1e-6)


@pytest.mark.integration
def test_multisteps_equals_one_step_on_mean_gradient():
    k = 3
    base = {"optimizer.name": "adamw", "optimizer.learning_rate": 0.01, "optimizer.weight_decay": 0.05,
            "optimizer.grad_clip_norm": 1.0, "schedule.name": "cosine"}
    params = tiny_params()
    micro = [grads_like(params, s) for s in range(2 * k)]
    tx_acc, _ = optim.make_optimizer(config(**base, **{"optimizer.accumulate_steps": k}), steps_per_epoch=10 * k,
                                     total_steps=100 * k)
    tx_one, _ = optim.make_optimizer(config(**base), steps_per_epoch=10, total_steps=100)
    mean = lambda gs: jax.tree.map(lambda *g: sum(g) / len(g), *gs)
    # intermediate micro-steps leave the params alone
    p_mid, s_mid = run(tx_acc, params, micro[:k - 1], jit=True)
    assert changed(params, p_mid) == set() and not bool(optim.is_update_step(s_mid))
    p_acc, s_acc = run(tx_acc, params, micro, jit=True)
    p_one, s_one = run(tx_one, params, [mean(micro[:k]), mean(micro[k:])])
    for key, a in leaves_with_paths(p_acc).items():
        np.testing.assert_allclose(a, leaves_with_paths(p_one)[key], rtol=1e-5, atol=1e-7)
    assert bool(optim.is_update_step(s_acc))
    assert float(optim.current_lr(s_acc)) == pytest.approx(float(optim.current_lr(s_one)))


def test_accumulation_schedule_counts_updates():
    """Train-step units in, update units out: lr of train step s is schedule(s // k) == current_lr."""
    k = 2
    c = config(**{"optimizer.accumulate_steps": k, "schedule.name": "step", "schedule.step_epochs": 1.0,
                  "schedule.decay_rate": 0.5})
    tx, schedule = optim.make_optimizer(c, steps_per_epoch=10, total_steps=40)  # 5 updates per epoch
    assert lr_at(schedule, 4) == pytest.approx(0.1) and lr_at(schedule, 5) == pytest.approx(0.05)
    params = tiny_params()
    state = tx.init(params)
    update = jax.jit(tx.update)
    for s in range(12):
        _, state = update(grads_like(params, s), state, params)
        if s % k == k - 1:   # an update happened at train step s, with the lr of update s // k
            assert float(optim.current_lr(state)) == pytest.approx(lr_at(schedule, s // k))
    assert int(state.gradient_step) == 12 // k


# ------------------------------------------------------------------------------- freezing / lr mult

def test_freeze_backbone_bit_identical_head_trains():
    c = config(**{"optimizer.momentum": 0.9, "optimizer.weight_decay": 0.1, "optimizer.grad_clip_norm": 1.0,
                  "transfer.freeze": "backbone"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=("fc",))
    params = tiny_params()
    new, state = run(tx, params, [grads_like(params, s) for s in range(4)])
    assert changed(params, new) == HEAD
    # no optimizer state kept for frozen parameters
    n_state = sum(x.size for x in jax.tree.leaves(state) if jnp.ndim(x) > 0)
    assert n_state == sum(x.size for x in jax.tree.leaves(params["fc"]))


@pytest.mark.parametrize("name", ["adamw", "lars", "rmsprop"])
def test_freeze_backbone_other_optimizers(name):
    c = config(**{"optimizer.name": name, "optimizer.momentum": 0.9, "optimizer.weight_decay": 0.1,
                  "transfer.freeze": "backbone"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=("fc",))
    params = tiny_params()
    new, _ = run(tx, params, [grads_like(params, s) for s in range(3)])
    assert changed(params, new) == HEAD


def test_clipping_ignores_frozen_gradients():
    """The global norm is that of the trainable gradients only."""
    c = config(**{"optimizer.learning_rate": 1.0, "optimizer.grad_clip_norm": 1.0, "transfer.freeze": "backbone"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=("fc",))
    params = tiny_params()
    grads = jax.tree.map(lambda g: 1e-3 * g, grads_like(params))
    grads["conv1"]["kernel"] = grads["conv1"]["kernel"] * 1e6    # huge frozen gradient
    new, _ = run(tx, params, [grads])
    np.testing.assert_allclose(new["fc"]["kernel"], params["fc"]["kernel"] - grads["fc"]["kernel"], rtol=1e-6)


def test_regex_freeze():
    c = config(**{"optimizer.momentum": 0.9, "optimizer.weight_decay": 0.1, "transfer.freeze": r"^(conv1|bn1)/"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    params = tiny_params()
    new, _ = run(tx, params, [grads_like(params, s) for s in range(3)])
    # 'layer1_0/conv1/...' does not match '^conv1/': it trains
    assert changed(params, new) == {k for k in ALL if not k.startswith(("['conv1']", "['bn1']"))}


def test_regex_matching_nothing_is_an_error():
    c = config(**{"transfer.freeze": "^nothing_like_this"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    with pytest.raises(ValueError, match=r"transfer\.freeze=.*matches no parameter"):
        tx.init(tiny_params())


def test_backbone_lr_mult_scales_backbone_update():
    params, grads = tiny_params(), grads_like(tiny_params())
    deltas = {}
    for mult in (1.0, 0.1):
        c = config(**{"optimizer.learning_rate": 0.5, "transfer.backbone_lr_mult": mult})
        tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=("fc",))
        updates, state = tx.update(grads, tx.init(params), params)
        deltas[mult] = leaves_with_paths(updates)
        assert float(optim.current_lr(state)) == pytest.approx(0.5)   # the head's lr
    for key in ALL:
        expect = 1.0 if key in HEAD else 0.1
        np.testing.assert_allclose(deltas[0.1][key], expect * deltas[1.0][key], rtol=1e-5)


def test_missing_head_is_an_error():
    c = config(**{"transfer.freeze": "backbone"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=("classifier",))
    with pytest.raises(ValueError, match="head"):
        tx.init(tiny_params())


def test_freezing_every_parameter_is_said_once_in_the_runs_log(caplog):
    """It was a warnings.warn from each tx.init (three per run, two attributed to optax's file, none
    in train.log)."""
    import logging

    f = optim.Freezing(".", ("fc",))
    with caplog.at_level(logging.WARNING, logger="train"):
        for _ in range(3):
            f.labels(tiny_params())
    assert [r.getMessage() for r in caplog.records] == [
        "transfer.freeze='.' freezes every parameter: the optimizer changes nothing"]
    assert caplog.records[0].name == "train"


def test_freezing_is_checked_once_when_resolved():
    with pytest.raises(ValueError, match=r"^transfer\.freeze='backbone': needs the model's head"):
        optim.Freezing("backbone", ())
    with pytest.raises(ValueError, match=r"^transfer\.backbone_lr_mult=0\.5: needs the model's head"):
        optim.Freezing("none", (), 0.5)
    for bad in (-1.0, float("inf")):   # inf once passed (>= 0) and made the backbone's weights non-finite
        with pytest.raises(ValueError, match=rf"^transfer\.backbone_lr_mult={bad}: must be a finite number >= 0"):
            optim.Freezing("none", ("fc",), bad)
    f = optim.Freezing.from_config(config(**{"transfer.freeze": "backbone", "transfer.backbone_lr_mult": 0.1}), ["fc"])
    assert f == optim.Freezing("backbone", ("fc",), 0.1) and f.pattern is None and f.uses_head


def test_make_optimizer_uses_the_resolved_freezing():
    """The setup resolves Freezing once; make_optimizer then takes it instead of re-reading the config."""
    c = config(**{"optimizer.momentum": 0.9})  # the config freezes nothing
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, freezing=optim.Freezing("backbone", ("fc",)))
    params = tiny_params()
    new, _ = run(tx, params, [grads_like(params, s) for s in range(2)])
    assert changed(params, new) == HEAD


def test_trainable_mask_modes():
    params = tiny_params()
    assert all(jax.tree.leaves(optim.trainable_mask(params, "none", ("fc",))))
    m = leaves_with_paths(optim.trainable_mask(params, "backbone", ("fc",)))
    assert {k for k, v in m.items() if v} == HEAD
    m = leaves_with_paths(optim.trainable_mask(params, "bias$", ("fc",)))
    assert {k for k, v in m.items() if not v} == {k for k in ALL if k.endswith("['bias']")}
    with pytest.raises(ValueError, match=r"transfer\.freeze"):
        optim.trainable_mask(params, "(", ())


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_decay_all_decays_every_parameter_as_torchvisions_reference_script(name):
    """torchvision's train.py (no --norm-weight-decay) decays biases and BatchNorm parameters too: with
    decay_all a zero gradient still moves every leaf (sgd: p * (1 - lr * wd), torch.optim.SGD's rule);
    without it, only kernels."""
    params = tiny_params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    over = {"optimizer.name": name, "optimizer.weight_decay": 0.1, "optimizer.momentum": 0.0,
            "optimizer.learning_rate": 0.5, "schedule.name": "constant"}
    tx, _ = optim.make_optimizer(config(**over, **{"optimizer.decay_all": True}), steps_per_epoch=10, total_steps=100)
    new, _ = run(tx, params, [zeros])
    assert changed(params, new) == ALL
    if name == "sgd":
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b * (1 - 0.5 * 0.1), rtol=1e-6), new, params)
    tx, _ = optim.make_optimizer(config(**over), steps_per_epoch=10, total_steps=100)
    assert changed(params, run(tx, params, [zeros])[0]) == KERNELS


def test_masks_on_resnet20_params_and_batch_stats():
    import zoo

    info = zoo.model_info("resnet20")
    model = zoo.create("resnet20")
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *info.input_shape)),
                                                  train=False))
    params, stats = variables["params"], variables["batch_stats"]
    paths = lambda tree, mask: {optim._path(p) for p, v in jax.tree_util.tree_flatten_with_path(mask)[0] if v}
    decays = paths(params, optim.decay_mask(params))
    assert decays and all(p.endswith("/kernel") for p in decays)
    every = {optim._path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert all(p.endswith(("/bias", "/scale")) for p in every - decays)
    assert "fc/bias" in every - decays and "bn1/scale" in every - decays
    assert paths(params, optim.trainable_mask(params, "backbone", info.head)) == {"fc/kernel", "fc/bias"}
    assert not any(jax.tree.leaves(optim.trainable_mask(stats, "backbone", info.head)))
    frozen = every - paths(params, optim.trainable_mask(params, r"^layer1_", info.head))
    assert frozen and all(p.startswith("layer1_") for p in frozen)
    stats_frozen = jax.tree.leaves(optim.trainable_mask(stats, r"(^|/)bn1/", info.head))
    assert 0 < stats_frozen.count(False) < len(stats_frozen)
    # the whole optimizer inits on the abstract params
    c = config(**{"optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4, "transfer.freeze": "backbone"})
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100, head=info.head)
    jax.eval_shape(tx.init, params)


# ------------------------------------------------------------------------------------------------ EMA

def test_ema_update():
    ema, params = {"w": jnp.full((2,), 1.0)}, {"w": jnp.full((2,), 3.0)}
    np.testing.assert_allclose(optim.ema_update(ema, params, 0.75)["w"], 1.5)
    np.testing.assert_array_equal(optim.ema_update(ema, params, 0.75, active=False)["w"], ema["w"])
    jitted = jax.jit(optim.ema_update)(ema, params, 0.75, active=jnp.asarray(True))
    np.testing.assert_allclose(jitted["w"], 1.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "lars"])  # coupled L2 + momentum; betas, eps; decoupled + trust
def test_injected_fields_update_as_the_config_does(name):
    """Numeric optimizer fields kept in the optimizer state (a search group's per-trial values) and set
    there to other values update exactly as a config holding those values: the learning rate as the
    peak of a warmup + cosine schedule, weight decay, momentum, Adam's betas and eps, clipping ..."""
    fields = {"learning_rate": 0.05, "weight_decay": 1e-3, "momentum": 0.8, "b1": 0.8, "b2": 0.99, "eps": 1e-6,
              "rms_decay": 0.8, "rms_eps": 1e-4, "trust_coefficient": 0.01, "grad_clip_norm": 0.5}
    base = {"optimizer.name": name, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
            "optimizer.grad_clip_norm": 1.0, "schedule.name": "cosine", "schedule.warmup_epochs": 0.2}
    tx, _ = optim.make_optimizer(config(**base), steps_per_epoch=10, total_steps=100, inject=optim.INJECTABLE)
    want_tx, _ = optim.make_optimizer(config(**{**base, **{f"optimizer.{k}": v for k, v in fields.items()}}),
                                      steps_per_epoch=10, total_steps=100)
    params, grads = tiny_params(), [grads_like(tiny_params(), s) for s in (1, 2, 3)]
    state = optim.set_hyperparams(tx.init(params), fields)
    got = params
    for g in grads:
        updates, state = tx.update(g, state, got)
        got = optax.apply_updates(got, updates)
    want, want_state = run(want_tx, params, grads)
    for k, v in leaves_with_paths(want).items():
        np.testing.assert_allclose(leaves_with_paths(got)[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    assert float(optim.current_lr(state)) == pytest.approx(float(optim.current_lr(want_state)), rel=1e-6)


def test_without_injection_the_state_holds_only_the_learning_rate():
    """Runs that inject nothing keep the optimizer state's structure (checkpoints stay compatible)."""
    tx, _ = optim.make_optimizer(config(), steps_per_epoch=10, total_steps=100)
    assert set(tx.init(tiny_params()).hyperparams) == {"learning_rate"}
    with pytest.raises(ValueError, match="inject"):
        optim.make_optimizer(config(), steps_per_epoch=10, total_steps=100, inject=("nesterov",))
