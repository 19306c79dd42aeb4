"""A workdir written by the code before the house redesign (tests/fixtures/checkpoint_v0, see its
README.json for the command) still restores, evaluates and resumes: parameter names, the state's
structure and the checkpoint layout are a promise to users."""
import json
import shutil

import ml_collections
import numpy as np
import pytest

import train
from helpers import FIXTURES

FIXTURE = FIXTURES / "checkpoint_v0"


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(FIXTURE / "checkpoints", tmp_path / "checkpoints")
    return tmp_path


def test_restore_gives_the_recorded_logits(workdir):
    expected = np.load(FIXTURE / "expected.npz")
    model, variables = train.restore(workdir)
    np.testing.assert_allclose(model.apply(variables, expected["image"], train=False), expected["logits_ema"],
                               rtol=1e-5, atol=1e-6)
    model, variables = train.restore(workdir, use_ema=False)
    np.testing.assert_allclose(model.apply(variables, expected["image"], train=False), expected["logits_params"],
                               rtol=1e-5, atol=1e-6)


def test_evaluate_reports_the_recorded_figures(workdir):
    recorded = json.loads((FIXTURE / "README.json").read_text())["evaluate"]
    report = train.evaluate(workdir, plot=False)
    assert report["step"] == recorded["step"] and report["count"] == recorded["count"]
    assert report["top1"] == pytest.approx(recorded["top1"], abs=1e-9)
    assert report["loss"] == pytest.approx(recorded["loss"], rel=1e-5)


@pytest.mark.integration
def test_training_resumes_from_it(workdir):
    config = ml_collections.ConfigDict(train.restore_meta(workdir)["config"])
    config.num_train_steps = 5
    result = train.fit(config, workdir)
    assert result.step == 5 and np.isfinite(result.eval["loss"])
