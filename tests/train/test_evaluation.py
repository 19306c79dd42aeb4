"""train.evaluation: evaluate a checkpoint with the figures fit reported, restore a model research
code can apply, load reads a checkpoint once (restore and restore_meta are its parts)."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from train import checkpoint, data


def test_evaluate_reproduces_the_reported_accuracy_exactly(trained_lenet, tmp_path):
    workdir, r = trained_lenet
    report = train.evaluate(workdir, checkpoint_step="latest", output_dir=tmp_path)
    assert report["step"] == r.step
    assert report["top1"] == r.eval["top1"] and report["top5"] == r.eval["top5"] and report["count"] == 1000
    assert report["loss"] == pytest.approx(r.eval["loss"], rel=1e-6)
    assert len(report["per_class_top1"]) == 10
    assert np.asarray(report["confusion"]).sum() == 1000
    import matplotlib.image
    assert matplotlib.image.imread(report["confusion_png"]).ndim == 3
    assert (tmp_path / f"eval_step{r.step}_test.json").is_file()


def test_an_output_folder_that_cannot_be_written_is_refused_before_evaluating(trained_lenet, tmp_path, monkeypatch):
    """Once a bare '[Errno 17] File exists' after the whole evaluation; '' counted as the default."""
    from train import evaluation

    monkeypatch.setattr(evaluation, "run_eval", lambda *a, **k: pytest.fail("evaluated before the check"))
    (tmp_path / "afile").write_text("")
    for value, why in [(tmp_path / "afile", f"{tmp_path / 'afile'} is a file, not a folder"),
                       (tmp_path / "afile" / "sub", f"{tmp_path / 'afile'} is a file, not a folder"),
                       ("", "empty; name a folder")]:
        with pytest.raises(ValueError, match=f"^output_dir={str(value)!r}: ".replace("(", r"\(") + why):
            train.evaluate(trained_lenet[0], output_dir=value)


def test_restore_gives_a_model_research_code_can_apply(trained_lenet):
    workdir, _ = trained_lenet
    model, variables = train.restore(workdir, checkpoint_step="latest")
    pipe = data.load({"name": "mnist5k"}, split="test", train=False, batch_size=500, image_shape=(28, 28, 1))
    correct = 0
    for b in pipe:
        pred = np.asarray(model.apply(variables, jnp.asarray(b["image"]), train=False)).argmax(-1)
        correct += int(((pred == b["label"]) * b["mask"]).sum())
    assert correct / 1000 == train.evaluate(workdir, checkpoint_step="latest", plot=False)["top1"]
    meta = train.restore_meta(workdir)
    assert meta["model"] == "lenet5" and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["preprocessing"]["image_size"] == [28, 28] and "jax" in meta["versions"]
    assert meta["config"]["optimizer"]["name"] == "adam"


@pytest.mark.parametrize("use_ema", ["no", 0, "False"])
def test_use_ema_takes_true_false_or_none_only(tmp_path, use_ema):
    """``bool("no")`` once counted as yes: the run's EMA was used when the caller asked for none."""
    with pytest.raises(ValueError, match=rf"^use_ema={use_ema!r}: must be True, False or None \(the run's choice\)$"):
        train.restore(tmp_path, use_ema=use_ema)


def test_load_reads_the_checkpoint_once(trained_lenet, monkeypatch):
    workdir, r = trained_lenet
    reads = []
    original = checkpoint.Checkpointer.read_step
    monkeypatch.setattr(checkpoint.Checkpointer, "read_step", lambda self, s, **kw: reads.append(s) or original(self, s, **kw))
    model, variables, meta, step = train.load(workdir)  # 'best'
    assert reads == [step] == [r.best_step] and meta["step"] == step
    assert model.num_classes == 10 and model.axis_name is None  # for research code: no device axis
    restored_model, restored = train.restore(workdir)
    assert restored_model == model
    jax.tree.map(np.testing.assert_array_equal, restored, variables)
    assert train.restore_meta(workdir) == meta
    assert set(variables) == {"params"}  # LeNet-5 has no BatchNorm statistics


def test_reading_a_workdir_warns_of_nothing(trained_lenet, caplog):
    """No notice about a read-only folder (orbax's, for how we open it), nor anything else, when
    restoring from a sound, writable workdir: only warnings a user can act on."""
    workdir, _ = trained_lenet
    with caplog.at_level(logging.INFO):
        train.restore(workdir)
        train.load(workdir, "latest")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_evaluate_takes_the_trained_weights_of_a_run_with_an_ema_and_says_which(tmp_path, capsys):
    """README promised ``use_ema=False`` for the trained weights, but ``train.evaluate`` took no such
    argument (a TypeError) and no printed figure said the EMA was evaluated."""
    from helpers import quick

    from train import evaluation

    workdir = tmp_path / "run"
    r = train.fit(quick(**{"optimizer.ema_decay": 0.9, "num_train_steps": 12, "eval_batch_size": 500,
                                "schedule.warmup_epochs": 0.0}), workdir)
    assert r.eval["split"] == "test" and r.eval["ema"] is True
    pipe = data.load({"name": "mnist5k"}, split="test", train=False, batch_size=500, image_shape=(28, 28, 1))

    def correct(use_ema):   # counted here, with the weights restore gives
        model, variables = train.restore(workdir, checkpoint_step="latest", use_ema=use_ema)
        return sum(int(((np.asarray(model.apply(variables, jnp.asarray(b["image"]), train=False)).argmax(-1)
                         == b["label"]) * b["mask"]).sum()) for b in pipe)

    ema = train.evaluate(workdir, checkpoint_step="latest", plot=False)
    trained = train.evaluate(workdir, checkpoint_step="latest", plot=False, use_ema=False)
    assert (ema["weights"], trained["weights"]) == ("ema", "trained")
    assert ema["top1"] == r.eval["top1"] == correct(True) / 1000 and trained["top1"] == correct(False) / 1000
    assert ema["loss"] != trained["loss"]
    assert sorted(p.name for p in (workdir / "eval").iterdir()) == ["eval_step12_test.json",
                                                                   "eval_step12_test_trained.json"]
    capsys.readouterr()
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest", "--weights", "trained"]) == 0
    assert capsys.readouterr().out.startswith(f"lenet5 step 12 on test (1000 examples): loss {trained['loss']:.4f}")
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest"]) == 0
    assert capsys.readouterr().out.startswith("lenet5 step 12 on test (1000 examples, EMA weights): ")
