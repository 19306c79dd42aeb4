"""train/schedules.py: learning-rate schedules (constant, step, multistep, exponential, cosine, linear, poly),
warmup, and errors that name the schedule field."""
import re

import pytest

from configs import default
from helpers import lr_at as value
from train import schedules

PEAK = 0.4


def sched(**fields):
    c = default.get_config().schedule
    for k, v in fields.items():
        c[k] = v
    return c


def test_constant_and_warmup_midpoint():
    s = schedules.make_schedule(sched(name="constant", warmup_epochs=2.0), peak_lr=PEAK, steps_per_epoch=10,
                                total_steps=100)
    assert value(s, 0) == 0.0
    assert value(s, 10) == pytest.approx(PEAK / 2)
    assert value(s, 20) == pytest.approx(PEAK)
    assert value(s, 99) == pytest.approx(PEAK)


def test_step_decay_at_boundaries():
    s = schedules.make_schedule(sched(name="step", step_epochs=3.0, decay_rate=0.1), peak_lr=PEAK, steps_per_epoch=10,
                                total_steps=100)
    assert value(s, 0) == pytest.approx(PEAK)
    assert value(s, 29) == pytest.approx(PEAK)
    assert value(s, 30) == pytest.approx(PEAK * 0.1)
    assert value(s, 59) == pytest.approx(PEAK * 0.1)
    assert value(s, 60) == pytest.approx(PEAK * 0.01)


def test_step_decay_counts_from_end_of_warmup():
    s = schedules.make_schedule(sched(name="step", step_epochs=3.0, decay_rate=0.1, warmup_epochs=1.0), peak_lr=PEAK,
                                steps_per_epoch=10, total_steps=100)
    assert value(s, 5) == pytest.approx(PEAK / 2)
    assert value(s, 39) == pytest.approx(PEAK)
    assert value(s, 40) == pytest.approx(PEAK * 0.1)


def test_multistep_milestones_fractional_epoch():
    # 2.5 updates per epoch: milestones at epochs 2 and 6 -> updates 5 and 15
    s = schedules.make_schedule(sched(name="multistep", milestones=(2, 6), decay_rate=0.5), peak_lr=PEAK,
                                steps_per_epoch=2.5, total_steps=100)
    assert value(s, 4) == pytest.approx(PEAK)
    assert value(s, 5) == pytest.approx(PEAK * 0.5)
    assert value(s, 14) == pytest.approx(PEAK * 0.5)
    assert value(s, 15) == pytest.approx(PEAK * 0.25)
    assert value(s, 99) == pytest.approx(PEAK * 0.25)


def test_exponential_continuous():
    s = schedules.make_schedule(sched(name="exponential", decay_epochs=2.0, decay_rate=0.5), peak_lr=PEAK,
                                steps_per_epoch=10, total_steps=100)
    assert value(s, 40) == pytest.approx(PEAK * 0.25)       # 4 epochs = 2 decay periods
    assert value(s, 10) == pytest.approx(PEAK * 0.5 ** 0.5)  # half a period


def test_cosine_half_and_end():
    s = schedules.make_schedule(sched(name="cosine", end_lr_factor=0.1), peak_lr=PEAK, steps_per_epoch=10,
                                total_steps=100)
    end = 0.1 * PEAK
    assert value(s, 0) == pytest.approx(PEAK)
    assert value(s, 50) == pytest.approx((PEAK + end) / 2)
    assert value(s, 100) == pytest.approx(end)
    assert value(s, 150) == pytest.approx(end)


def test_linear_decay_to_zero():
    """ShuffleNet's policy: a straight line from the peak to 0 at the last update."""
    s = schedules.make_schedule(sched(name="linear"), peak_lr=PEAK, steps_per_epoch=10, total_steps=100)
    assert value(s, 0) == pytest.approx(PEAK)
    assert value(s, 25) == pytest.approx(0.75 * PEAK)
    assert value(s, 100) == pytest.approx(0.0, abs=1e-7)


def test_poly_is_caffes_policy():
    """Caffe's "poly": peak * (1 - t / T) ** power (SqueezeNet's release: power 0.5), then held."""
    s = schedules.make_schedule(sched(name="poly", power=0.5), peak_lr=PEAK, steps_per_epoch=10, total_steps=100)
    assert [value(s, t) for t in (0, 75, 100, 120)] == pytest.approx([PEAK, 0.5 * PEAK, 0.0, 0.0], abs=1e-7)
    with pytest.raises(ValueError, match=r"^schedule\.power=0\.0: must be > 0"):
        schedules.make_schedule(sched(name="poly", power=0.0), peak_lr=PEAK, steps_per_epoch=10, total_steps=100)


def test_an_end_lr_factor_of_one_holds_the_peak():
    s = schedules.make_schedule(sched(name="cosine", end_lr_factor=1.0), peak_lr=PEAK, steps_per_epoch=10,
                                total_steps=100)
    assert [value(s, t) for t in (0, 50, 100)] == pytest.approx([PEAK] * 3)


def test_cosine_with_warmup_ends_at_total_steps():
    s = schedules.make_schedule(sched(name="cosine", warmup_epochs=1.0), peak_lr=PEAK, steps_per_epoch=10,
                                total_steps=110)
    assert value(s, 10) == pytest.approx(PEAK)
    assert value(s, 60) == pytest.approx(PEAK / 2)
    assert value(s, 110) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("fields, field", [
    (dict(name="foo"), "schedule.name='foo'"),
    (dict(name="step", step_epochs=0.0), "schedule.step_epochs"),
    (dict(name="multistep", milestones=(5, 3)), "schedule.milestones"),
    (dict(name="multistep", milestones=(30, "60")), "schedule.milestones"),
    (dict(name="multistep", milestones=()), "schedule.milestones=(): 'multistep' needs at least one epoch"),
    (dict(name="cosine", end_lr_factor=5.0), "schedule.end_lr_factor=5.0: must be in [0, 1]"),
    (dict(name="linear", end_lr_factor=-0.1), "schedule.end_lr_factor=-0.1: must be in [0, 1]"),
    (dict(name="exponential", decay_epochs=-1.0), "schedule.decay_epochs"),
    (dict(name="cosine", warmup_epochs=20.0), "schedule.warmup_epochs"),
    (dict(name="constant", warmup_epochs=-1.0), "schedule.warmup_epochs"),
    # the step schedules took these: a warmup past the end never reached the peak, a factor > 1 grew the lr
    *[(dict(name=n, warmup_epochs=20.0, milestones=(5,)), "schedule.warmup_epochs=20.0: warmup (200 updates) must end")
      for n in ("constant", "step", "multistep", "exponential")],
    *[(dict(name=n, decay_rate=2.0, milestones=(5,)), "schedule.decay_rate=2.0: must be in (0, 1]")
      for n in ("step", "multistep", "exponential")],
])
def test_schedule_errors_name_the_field(fields, field):
    with pytest.raises(ValueError, match="^" + re.escape(field)) as e:
        schedules.make_schedule(sched(**fields), peak_lr=PEAK, steps_per_epoch=10, total_steps=100)
    assert len(str(e.value).splitlines()) == 1
    if fields["name"] == "foo":
        for allowed in schedules.SCHEDULES:
            assert repr(allowed) in str(e.value)


@pytest.mark.parametrize("peak", [float("inf"), float("nan"), -0.1])
def test_a_learning_rate_that_is_not_a_finite_number_is_refused(peak):
    """inf passed the ">= 0" check: every update was inf x gradient, a non-finite state from finite gradients."""
    with pytest.raises(ValueError, match=rf"^optimizer\.learning_rate={peak}: must be a finite number >= 0$"):
        schedules.make_schedule(sched(name="constant"), peak_lr=peak, steps_per_epoch=10, total_steps=100)


@pytest.mark.parametrize("fields, said", [(dict(name="multistep", milestones=(4, 12)), "1 of 2 decays fall"),
                                          (dict(name="multistep", milestones=(12,)), "every decay falls"),
                                          (dict(name="step", step_epochs=30.0), "every decay falls")])
def test_decays_after_the_end_of_the_run_are_a_warning(fields, said, caplog):
    """A recipe's milestones on a shorter run (resnet20's (82, 123) with 50 epochs) never decay:
    said once, naming the field (a smoke test of a recipe for a few steps still runs)."""
    s = schedules.make_schedule(sched(**fields), peak_lr=PEAK, steps_per_epoch=10, total_steps=100)
    assert value(s, 99) == pytest.approx(PEAK * (0.1 if "1 of 2" in said else 1.0))
    field = "schedule.milestones" if fields["name"] == "multistep" else "schedule.step_epochs"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage().startswith(field) and said in caplog.text
    caplog.clear()
    schedules.make_schedule(sched(name="multistep", milestones=(4, 9)), peak_lr=PEAK, steps_per_epoch=10,
                            total_steps=100)
    assert not caplog.records


@pytest.mark.parametrize("name, period, rate", [("inception_v3_imagenet", 2, 0.94), ("mobilenet_v2_imagenet", 1, 0.98)])
def test_recipes_that_decay_in_steps_do(name, period, rate):
    """TF-slim's exponential_decay(staircase=True) for Inception v3, torchvision's StepLR(1, 0.98) for
    MobileNetV2: both configs once decayed continuously (up to 6% lower between the steps)."""
    import importlib

    c = importlib.import_module(f"configs.{name}").get_config()
    peak, spe = c.optimizer.learning_rate, 100
    s = schedules.make_schedule(c.schedule, peak_lr=peak, steps_per_epoch=spe, total_steps=int(c.num_epochs * spe))
    at = 10 * period * spe + int(c.schedule.warmup_epochs * spe)   # past any warmup, on a step
    assert value(s, at) == pytest.approx(value(s, at + period * spe - 1))          # flat within a period
    assert value(s, at + period * spe) == pytest.approx(value(s, at) * rate)      # one step down at its end
