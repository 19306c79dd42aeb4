"""A field the chosen optimizer / schedule does not read (momentum with adam, milestones with cosine),
set to other than configs/default.py's value, is one warning line naming it, its value, the choice and
what that one reads; no shipped config gives one; the tables say what the code reads."""
import importlib
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zoo
from configs import default
from helpers import ROOT
from train import optim, schedules

CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem not in ("__init__", "default"))
ALL_READ = "learning_rate, weight_decay, decay_all, grad_clip_norm, accumulate_steps, ema_decay, ema_warmup"
ADAM_READS = f"{ALL_READ}, b1, b2, eps"
SGD_READS = f"{ALL_READ}, momentum, nesterov"


def config(**overrides):
    """default config with dotted overrides: config(**{"optimizer.name": "adam"})."""
    c = default.get_config()
    for key, value in overrides.items():
        section, leaf = key.split(".")
        c[section][leaf] = value
    return c


def unread_warnings(caplog, c, **kwargs):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train"):
        optim.make_optimizer(c, **{"steps_per_epoch": 10, "total_steps": 1000, **kwargs})
    return [r.getMessage() for r in caplog.records if "is not read by" in r.getMessage()]


@pytest.mark.parametrize("overrides, said", [
    ({"optimizer.name": "adam", "optimizer.momentum": 0.5},
     f"optimizer.momentum=0.5 is not read by optimizer.name='adam' (it reads {ADAM_READS})"),
    ({"optimizer.name": "adam", "optimizer.nesterov": True},
     f"optimizer.nesterov=True is not read by optimizer.name='adam' (it reads {ADAM_READS})"),
    ({"optimizer.rms_eps": 0.1},
     f"optimizer.rms_eps=0.1 is not read by optimizer.name='sgd' (it reads {SGD_READS})"),
    ({"optimizer.name": "lars", "optimizer.b1": 0.5},
     f"optimizer.b1=0.5 is not read by optimizer.name='lars' (it reads {ALL_READ}, momentum, trust_coefficient)"),
    ({"schedule.milestones": (30, 60)},
     "schedule.milestones=(30, 60) is not read by schedule.name='cosine' (it reads warmup_epochs, end_lr_factor)"),
    ({"schedule.name": "step", "schedule.power": 2.0},
     "schedule.power=2.0 is not read by schedule.name='step' (it reads warmup_epochs, step_epochs, decay_rate)"),
    ({"schedule.name": "constant", "schedule.decay_rate": 0.5},
     "schedule.decay_rate=0.5 is not read by schedule.name='constant' (it reads warmup_epochs)"),
])
def test_a_field_the_choice_does_not_read_is_a_warning_naming_it(overrides, said, caplog):
    assert unread_warnings(caplog, config(**overrides)) == [said]
    # a search group's run (the peak in the state builds the schedule twice): still said once
    assert unread_warnings(caplog, config(**overrides), inject=("learning_rate",)) == [said]
    assert caplog.records[0].name == "train" and caplog.records[0].levelname == "WARNING"


def test_one_line_per_unread_field_and_none_at_the_defaults(caplog):
    """momentum 0.9 and milestones () are the defaults: adam / cosine do not read them, nothing is said."""
    assert unread_warnings(caplog, config(**{"optimizer.name": "adam"})) == []
    assert unread_warnings(caplog, config(**{"optimizer.name": "sgd", "optimizer.momentum": 0.5,
                                              "optimizer.nesterov": True, "schedule.name": "multistep",
                                              "schedule.milestones": (30, 60)})) == []
    said = unread_warnings(caplog, config(**{"optimizer.name": "adamw", "optimizer.momentum": 0.0,
                                             "optimizer.trust_coefficient": 0.01, "optimizer.b1": 0.8,
                                             "schedule.name": "poly", "schedule.power": 2.0,
                                             "schedule.step_epochs": 10.0, "schedule.decay_epochs": 2.0}))
    assert [m.split(" is not read by ")[0] for m in said] == [
        "optimizer.momentum=0.0", "optimizer.trust_coefficient=0.01", "schedule.decay_epochs=2.0",
        "schedule.step_epochs=10.0"]   # in the order of the fields' names
    assert said[0].endswith("optimizer.name='adamw' (it reads " + ADAM_READS + ")")
    assert said[-1].endswith("schedule.name='poly' (it reads warmup_epochs, end_lr_factor, power)")


@pytest.mark.parametrize("name", CONFIGS)
def test_no_shipped_config_sets_a_field_it_does_not_read(name, caplog):
    c = importlib.import_module(f"configs.{name}").get_config()
    spe = 100
    total = c.num_train_steps if c.num_train_steps > 0 else int(math.ceil(c.num_epochs * spe))
    assert unread_warnings(caplog, c, steps_per_epoch=spe, total_steps=total, head=zoo.model_info(c.model).head) == []


# ------------------------------------------------------------------ the tables against the code

CHANGED = {"momentum": 0.5, "nesterov": True, "b1": 0.5, "b2": 0.9, "eps": 1e-2, "rms_decay": 0.5, "rms_eps": 0.1,
           "trust_coefficient": 0.1}


def trained(c):
    """Parameters after three updates of the optimizer of ``c`` on a kernel, a bias and a norm scale."""
    ks = jax.random.split(jax.random.key(0), 6)
    params = {"conv": {"kernel": jax.random.normal(ks[0], (3, 3, 2, 4))},
              "bn": {"scale": 1 + jax.random.normal(ks[1], (4,))},
              "fc": {"kernel": jax.random.normal(ks[2], (4, 3)), "bias": jax.random.normal(ks[3], (3,))}}
    tx, _ = optim.make_optimizer(c, steps_per_epoch=10, total_steps=100)
    state = tx.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda x, k=ks[3 + i]: jax.random.normal(k, x.shape), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_the_table_says_which_fields_each_optimizer_reads(name):
    """Changing a field changes the updates exactly when READS says the optimizer reads it."""
    base = {"optimizer.name": name, "schedule.name": "constant"}
    before = trained(config(**base))
    for field, value in CHANGED.items():
        after = trained(config(**base, **{f"optimizer.{field}": value}))
        changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
        assert changed == (field in optim.READS[name]), (name, field)
    assert set().union(*optim.READS.values()) == set(CHANGED)


SCHEDULE_BASE = {"step_epochs": 3.0, "milestones": (2.0, 5.0), "decay_rate": 0.1, "decay_epochs": 1.0,
                 "end_lr_factor": 0.0, "power": 1.0}
SCHEDULE_CHANGED = {"step_epochs": 4.0, "milestones": (3.0, 6.0), "decay_rate": 0.5, "decay_epochs": 2.0,
                    "end_lr_factor": 0.1, "power": 0.5}


def rates(name, **fields):
    s = default.get_config().schedule
    s.update({"name": name, **SCHEDULE_BASE, **fields})
    return np.asarray(jax.vmap(schedules.make_schedule(s, peak_lr=0.4, steps_per_epoch=10, total_steps=100))(
        jnp.arange(100)))


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_the_table_says_which_fields_each_schedule_reads(name):
    before = rates(name)
    for field, value in SCHEDULE_CHANGED.items():
        changed = not np.array_equal(before, rates(name, **{field: value}))
        assert changed == (field in schedules.READS[name]), (name, field)
    assert set(schedules.READS) == set(schedules.SCHEDULES)
    assert set().union(*schedules.READS.values()) == set(SCHEDULE_CHANGED)
