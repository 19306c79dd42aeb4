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


def test_restore_refuses_what_it_cannot_honour_in_one_line(trained_lenet, tmp_path):
    """use_ema=True for a run without an EMA gave the trained weights, unsaid; a bool step read as step
    1; a workdir of None was a TypeError naming no argument. The step may be given by position too,
    as for train.load."""
    workdir, _ = trained_lenet
    with pytest.raises(ValueError, match=r"^use_ema=True: the run in .* kept no EMA \(optimizer\.ema_decay 0\)"):
        train.restore(workdir, use_ema=True)
    with pytest.raises(ValueError, match=r"^use_ema=True: the run in .* kept no EMA"):
        train.evaluate(workdir, use_ema=True, plot=False, output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^checkpoint=True: allowed values are 'best', 'latest' or a step number"):
        train.restore(workdir, checkpoint_step=True)
    for call in (train.restore, train.load, train.restore_meta):
        with pytest.raises(ValueError, match=r"^workdir=None: the folder of a run \(a str or path\)$"):
            call(None)
    latest = train.load(workdir, "latest").step
    jax.tree.map(np.testing.assert_array_equal, train.restore(workdir, latest)[1],
                 train.restore(workdir, checkpoint_step=latest)[1])


def test_restore_meta_reads_the_meta_only(trained_lenet, monkeypatch):
    """It read and verified the whole train state (optimizer moments too) to return the JSON beside it."""
    from train import checkpoint

    workdir, _ = trained_lenet
    best = train.load(workdir).meta
    monkeypatch.setattr(checkpoint.Checkpointer, "read_step", lambda *a, **k: pytest.fail("read the state"))
    assert train.restore_meta(workdir) == best


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


def test_a_thousand_class_confusion_figure_stays_bounded(tmp_path):
    """0.5 in per class once made 1,000 ImageNet classes a 50,200 x 50,150 px figure: 10 GB, then numpy's
    'Unable to allocate 5.99 GiB' after the whole evaluation. 60 classes were 3,200 px wide then."""
    from PIL import Image

    from train import evaluation

    rng = np.random.default_rng(0)
    for k in (60, 1000):
        confusion = rng.integers(0, 5, (k, k))
        path = evaluation.plot_confusion(confusion, [f"class {i}" for i in range(k)], tmp_path / f"c{k}.png",
                                         title=f"{k} classes")
        with Image.open(path) as im:
            assert max(im.size) <= 2000, (k, im.size)   # 20 in at 100 dpi (evaluation.MAX_FIGURE_IN)


def test_the_command_prints_the_figures_before_drawing_the_confusion_png(trained_lenet, tmp_path, capsys,
                                                                         monkeypatch):
    """The figures were printed after the PNG: a PNG that failed (memory, disk) showed none of them."""
    from train import evaluation

    workdir, r = trained_lenet

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation, "plot_confusion", no_room)
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest", "--output_dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"lenet5 step {r.step} on test (1000 examples): loss {r.eval['loss']:.4f}  "
                          f"top-1 {r.eval['top1']:.4f}") and "per-class top-1: 0: " in out
    assert err == "error: [Errno 28] No space left on device\n"
    assert (tmp_path / f"eval_step{r.step}_test.json").is_file()   # the report is kept


def test_a_default_output_folder_that_cannot_be_written_is_refused_before_evaluating(trained_lenet, capsys,
                                                                                     monkeypatch):
    """Only an explicit output_dir was checked: a read-only workdir was evaluated to the end, then
    '[Errno 30] Read-only file system: .../eval/.eval_step868_test.json....part' and no figures."""
    import re

    from train import evaluation
    from zoo import files

    workdir = trained_lenet[0]
    monkeypatch.setattr(files, "cannot_write_in", lambda folder: OSError(30, "Read-only file system"))
    monkeypatch.setattr(evaluation, "run_eval", lambda *a, **k: pytest.fail("evaluated before the check"))
    default = workdir / "eval"   # the nearest existing folder: the workdir, or eval/ once another test wrote there
    message = (rf"^WORKDIR/eval={re.escape(repr(str(default)))}: {re.escape(str(workdir))}(/eval)? cannot be written "
               r"\(Read-only file system\); write elsewhere with --output_dir DIR$")
    with pytest.raises(ValueError, match=message):
        train.evaluate(workdir, checkpoint_step="latest")
    assert evaluation.main(["--workdir", str(workdir), "--checkpoint", "latest"]) == 2
    assert re.match(message.replace("^", "^error: "), capsys.readouterr().err.removesuffix("\n"))


def test_a_shared_output_dir_keeps_another_workdirs_report(trained_lenet, tmp_path, monkeypatch):
    """Two runs evaluated into one --output_dir at the same step and split: the second replaced the
    first's report and PNG without a word. The same workdir replaces its own report (the same numbers)."""
    import json
    import os

    from train import evaluation

    workdir, r = trained_lenet
    report = tmp_path / f"eval_step{r.step}_test.json"
    report.write_text(json.dumps({"workdir": "/elsewhere/run1", "top1": 0.5}))
    with monkeypatch.context() as m:
        m.setattr(evaluation, "run_eval", lambda *a, **k: pytest.fail("evaluated before the check"))
        with pytest.raises(ValueError, match=rf"^output_dir: {report} is the report of another workdir "
                                             rf"\(/elsewhere/run1\); choose another --output_dir for {workdir}$"):
            train.evaluate(workdir, checkpoint_step="latest", output_dir=tmp_path)
        report.write_text("my notes")
        with pytest.raises(ValueError, match=rf"^output_dir: {report} is not a report of this workdir; choose "
                                             rf"another --output_dir for {workdir}$"):
            train.evaluate(workdir, checkpoint_step="latest", output_dir=tmp_path)
    assert report.read_text() == "my notes"
    monkeypatch.chdir(workdir.parent)
    for same in (str(workdir), os.path.relpath(workdir)):   # its own report, however the path was written
        report.write_text(json.dumps({"workdir": same, "top1": 0.5}))
        train.evaluate(workdir, checkpoint_step="latest", output_dir=tmp_path, plot=False)
        assert json.loads(report.read_text())["top1"] == r.eval["top1"]


@pytest.mark.parametrize("raised, status, line", [
    (KeyboardInterrupt(), 130, "error: interrupted (SIGINT): the evaluation stopped, nothing more was written"),
    (RuntimeError("Worker process was terminated unexpectedly with exit code -9.\nSearch the logs above"), 1,
     "error: RuntimeError: Worker process was terminated unexpectedly with exit code -9."),
])
def test_the_command_ends_an_interrupt_or_a_dead_worker_in_one_line(trained_lenet, monkeypatch, capsys, raised,
                                                                      status, line):
    """Ctrl-C printed an 18-frame KeyboardInterrupt traceback, a killed data worker grain's traceback."""
    from train import evaluation

    def fail(*a, **k):
        raise raised

    monkeypatch.setattr(evaluation, "run_eval", fail)
    assert evaluation.main(["--workdir", str(trained_lenet[0]), "--checkpoint", "latest"]) == status
    assert capsys.readouterr().err.strip() == line
