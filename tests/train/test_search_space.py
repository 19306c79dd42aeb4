"""The search space: distributions parsed from ``--space 'path=dist'``, typed by the config field,
checked at every value they can give; every bad entry is one error line naming it."""
import logging

import numpy as np
import pytest

from helpers import quick

LR = "optimizer.learning_rate=loguniform(1e-4, 1e-1)"


def parse(*entries, method="random", **overrides):
    from train.search import space

    return space.parse(list(entries), quick(**overrides), method)


def test_distributions_become_optuna_distributions():
    import optuna.distributions as d

    s = parse(LR, "optimizer.weight_decay=uniform(0, 1e-3)", "batch_size=int(16, 128)",
              "optimizer.name=choice(sgd, adam)", "optimizer.nesterov=choice(true, false)")
    dists = s.distributions()
    assert dists[LR.split("=")[0]] == d.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["optimizer.weight_decay"] == d.FloatDistribution(0.0, 1e-3)
    assert dists["batch_size"] == d.IntDistribution(16, 128)
    assert dists["optimizer.name"] == d.CategoricalDistribution(("sgd", "adam"))
    assert dists["optimizer.nesterov"] == d.CategoricalDistribution((True, False))


def test_grid_forms_and_grid_size():
    """loggrid(1e-4, 1e-2, 3) is 1e-4, 1e-3, 1e-2; grid(0, 0.2, 3) is 0, 0.1, 0.2; the grid is their product."""
    s = parse("optimizer.learning_rate=loggrid(1e-4, 1e-2, 3)", "label_smoothing=grid(0, 0.2, 3)",
              "optimizer.name=choice(sgd, adam)", method="grid")
    np.testing.assert_allclose(s["optimizer.learning_rate"].values, (1e-4, 1e-3, 1e-2), rtol=1e-12)
    np.testing.assert_allclose(s["label_smoothing"].values, (0.0, 0.1, 0.2), atol=1e-12)
    assert s.grid_size() == 18
    assert s["optimizer.learning_rate"].log and not s["label_smoothing"].log


def test_choice_values_take_the_field_type():
    s = parse("batch_size=choice(32, 64.0)", "optimizer.momentum=choice(0, 0.9)",
              "model_kwargs.norm=choice(none, batch)", **{"optimizer.name": "sgd"})
    assert s["batch_size"].values == (32, 64) and all(type(v) is int for v in s["batch_size"].values)
    assert s["optimizer.momentum"].values == (0.0, 0.9) and type(s["optimizer.momentum"].values[0]) is float
    assert s["model_kwargs.norm"].values == (None, "batch")


def test_apply_sets_values_on_a_copy():
    base = quick()
    from train.search import space

    s = space.parse([LR, "model_kwargs.norm=choice(none, batch)"], base)
    c = s.apply(base, {"optimizer.learning_rate": 3e-3, "model_kwargs.norm": "batch"})
    assert c.optimizer.learning_rate == 3e-3 and c.model_kwargs.norm == "batch"
    assert base.optimizer.learning_rate == 2e-3 and "norm" not in base.model_kwargs


@pytest.mark.parametrize("entry, method, message", [
    ("optimizer.learning_rat=loguniform(1e-4, 1e-1)", "random", r"unknown config field optimizer\.learning_rat; did you "
                                                                  r"mean optimizer\.learning_rate"),
    ("optimizer.learning_rate=loguniform(0, 1e-1)", "random", r"loguniform needs bounds > 0"),
    ("optimizer.learning_rate=loguniform(-1e-3, 1e-1)", "random", r"loguniform needs bounds > 0"),
    ("optimizer.learning_rate=loggrid(0, 1e-1, 3)", "grid", r"loggrid needs bounds > 0"),
    ("optimizer.learning_rate=loguniform(1e-4)", "random", r"takes two numbers"),
    ("optimizer.learning_rate=uniform(0.1, 0.01)", "random", r"needs low < high"),
    ("optimizer.learning_rate=gauss(1, 2)", "random", r"unknown distribution 'gauss'; allowed: uniform, loguniform"),
    ("optimizer.learning_rate=1e-3", "random", r"expected 'path=dist'"),
    ("optimizer.learning_rate=grid(1e-3, 1e-2, 1)", "grid", r"count must be an integer >= 2"),
    ("optimizer.learning_rate=uniform(1e-3, 1e-2)", "grid", r"a grid search takes choice, grid, loggrid"),
    ("optimizer.momentum=uniform(0, 1.5)", "random", r"the value 1\.5 is not allowed: optimizer\.momentum=1\.5: must be "
                                                     r"in \[0, 1\)"),
    ("optimizer.name=choice(sgd, adamm)", "random", r"the value 'adamm' is not allowed: optimizer\.name='adamm'"),
    ("batch_size=uniform(32, 64)", "random", r"batch_size is an integer field; use int\(a, b\) or choice"),
    ("schedule.milestones=choice(1, 2)", "random", r"schedule\.milestones is a tuple field"),
    ("data=choice(1, 2)", "random", r"data is a ConfigDict field"),
    ("model_kwargs.dropout=uniform(0, 0.5)", "random", r"lenet5 does not take option\(s\) 'dropout'"),
    ("optimizer.momentum=uniform(0.5, 0.95)", "random", r"optimizer\.momentum is not read by optimizer\.name='adam' "
                                                        r"\(it reads learning_rate, .*, b1, b2, eps\): every trial"),
    ("schedule.power=uniform(1, 2)", "random", r"schedule\.power is not read by schedule\.name='cosine' "
                                               r"\(it reads warmup_epochs, end_lr_factor\)"),
])
def test_bad_entries_are_one_line_naming_the_entry(entry, method, message):
    from train.search.space import SpaceError

    with pytest.raises(SpaceError, match=message) as e:
        parse(entry, method=method)
    assert str(e.value).startswith(f"--space {entry!r}: ") and "\n" not in str(e.value)


def test_searching_a_field_twice_or_nothing_is_an_error():
    from train.search.space import SpaceError

    with pytest.raises(SpaceError, match="searched twice"):
        parse(LR, "optimizer.learning_rate=uniform(0.1, 0.2)")
    with pytest.raises(SpaceError, match="nothing to search"):
        parse()


def test_a_config_invalid_whatever_the_values_is_a_config_error():
    """One epoch of warmup in a one-epoch run is wrong for every learning rate: the config is to blame."""
    from train.search.space import SpaceError

    with pytest.raises(ValueError, match=r"^--config: schedule\.warmup_epochs") as e:
        parse(LR, "optimizer.weight_decay=uniform(0, 1e-3)", num_epochs=1.0)
    assert not isinstance(e.value, SpaceError)


def test_trial_count(caplog):
    """A grid runs its size (a larger --trials is said, once silently ignored); --trials smaller than the
    grid is an error; random and TPE need --trials."""
    from train.search.session import trial_count

    s = parse("optimizer.learning_rate=loggrid(1e-4, 1e-2, 3)", "optimizer.name=choice(sgd, adam)", method="grid")
    with caplog.at_level(logging.WARNING, logger="train"):
        assert trial_count("grid", s, None) == 6 == trial_count("grid", s, 8)
    assert [r.getMessage() for r in caplog.records] == ["--trials 8: the grid has 6 points, so the search runs 6 "
                                                        "trials"]
    with pytest.raises(ValueError, match=r"--trials 4: the grid has 6 points \(3 x 2\); give --trials 6"):
        trial_count("grid", s, 4)
    assert trial_count("random", s, 4) == 4
    with pytest.raises(ValueError, match="--trials: needed for --method random"):
        trial_count("random", s, None)
    with pytest.raises(ValueError, match="--method 'bayes': allowed grid, random, tpe"):
        trial_count("bayes", s, 4)


@pytest.mark.parametrize("entries, message", [
    (["optimizer.learning_rate=uniform(0, inf)"], r"^--space 'optimizer\.learning_rate=uniform\(0, inf\)': uniform "
                                                  r"needs finite bounds, got 0 and inf$"),
    (["optimizer.learning_rate=choice(1, 1.0)"], r"^--space 'optimizer\.learning_rate=choice\(1, 1\.0\)': choice has "
                                                 r"a value twice \(as floats: \(1\.0, 1\.0\)\)$"),
])
def test_entries_a_trial_would_fail_on_are_refused_up_front(entries, message):
    """Once they passed, and the first trial failed after the study had stored this search's identity
    (so the corrected command was refused as another search), or two trials ran the same value."""
    from train.search import space

    with pytest.raises(space.SpaceError, match=message):
        space.parse(entries, quick(), "random")


def test_a_config_that_fails_whatever_the_value_is_blamed_on_the_config():
    """A warmup longer than the run was reported as the first searched value's fault."""
    from train.search import space

    config = quick(num_epochs=0.05, **{"schedule.warmup_epochs": 1.0})
    with pytest.raises(ValueError, match=r"^--config: schedule\.warmup_epochs=1\.0: warmup") as e:
        space.parse(["optimizer.learning_rate=loguniform(1e-4, 1e-1)"], config, "random")
    assert not isinstance(e.value, space.SpaceError)
    with pytest.raises(ValueError, match=r"^--config: num_epochs=0\.0: must be > 0"):
        space.parse(["optimizer.learning_rate=loguniform(1e-4, 1e-1)"], quick(num_epochs=0.0), "random")
    with pytest.raises(ValueError, match=r"^--config: eval_every_epochs=0\.0: must be > 0"):   # the session divided by it
        space.parse(["optimizer.learning_rate=loguniform(1e-4, 1e-1)"], quick(eval_every_epochs=0.0), "random")


def test_checking_the_space_does_not_repeat_the_runs_warnings(caplog):
    """Each candidate config the space's checks built said "optimizer.momentum=0.5 is not read by ..."
    again (4 times for a 2-trial search); the runs say it, once each (reaudit_probe)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="train"):
        parse(LR, **{"optimizer.momentum": 0.5})   # adam does not read it
    assert not [r for r in caplog.records if "is not read by" in r.getMessage()]


def test_a_field_read_by_one_of_the_searched_optimizers_may_be_searched():
    """Searching momentum beside optimizer.name=choice(sgd, adam) is a fair question (sgd reads it)."""
    s = parse("optimizer.name=choice(sgd, adam)", "optimizer.momentum=uniform(0.5, 0.95)")
    assert s.paths == ("optimizer.name", "optimizer.momentum")
