"""train.fit end to end: a short LeNet-5 run reaches its accuracy, writes its outputs (metrics.jsonl,
result.json), says what it compiles and for how long, re-running a finished run changes nothing,
another model's workdir is refused untouched, a run that fails before saving leaves no folder behind,
a non-finite loss stops the run with the last finite state checkpointed, a CIFAR config runs."""
import importlib
import json
import logging
import re
import shutil

import jax
import numpy as np
import pytest

import train
from helpers import quick, snapshot
from train import checkpoint, loop

TRAIN_KEYS = {"step", "split", "loss", "top1", "top5", "grad_norm", "learning_rate", "nonfinite_steps", "images_per_s"}
EVAL_KEYS = {"step", "split", "loss", "top1", "top5", "count"}


def test_short_lenet5_training_reaches_95_percent(trained_lenet):
    _, r = trained_lenet
    assert r.eval["count"] == 1000  # every held-out image, once
    assert r.eval["top1"] >= 0.95
    assert r.best_top1 >= r.eval["top1"]


def test_metrics_log_and_result_json(trained_lenet):
    """4 epochs of 4,000 digits in batches of 64: 62 steps per epoch; log_every_steps=62 and one
    evaluation per epoch give a train line then an eval line at steps 62, 124, 186 and 248."""
    workdir, r = trained_lenet
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["split"]) for m in lines] == [(s, split) for s in (62, 124, 186, 248)
                                                        for split in ("train", "eval")]
    assert all(set(m) == (TRAIN_KEYS if m["split"] == "train" else EVAL_KEYS) for m in lines)
    assert lines[-1]["top1"] == r.eval["top1"] and lines[-1]["count"] == 1000
    assert all(m["nonfinite_steps"] == 0 and m["images_per_s"] > 0 for m in lines if m["split"] == "train")
    result = json.loads((workdir / "result.json").read_text())
    assert set(result) == {"step", "epoch", "train", "eval", "best_top1", "best_step", "interrupted", "seconds"}
    assert result["step"] == 248 and result["epoch"] == 4.0 and result["interrupted"] is None
    assert result["eval"]["top1"] == r.eval["top1"] and "confusion" not in result["eval"]
    assert result["best_step"] == max((m for m in lines if m["split"] == "eval"), key=lambda m: m["top1"])["step"]
    assert (workdir / "tensorboard").is_dir()


@pytest.mark.integration
def test_a_run_says_what_it_is_and_what_it_compiles(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="train"):
        train.fit(quick(num_train_steps=2, log_every_steps=1, **{"schedule.warmup_epochs": 0.0}), tmp_path)
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("lenet5 on mnist5k: 4,000 training images (train), 1,000 eval images (test), "
                              "10 classes | 2 steps of batch 64")
    assert said[1] == "compiling the initial state..." and re.fullmatch(r"compiling the initial state: done in "
                                                                        r"\d+\.\ds", said[2])
    out = capsys.readouterr().out.splitlines()
    for what, began in (("train step", r" \(\d+\.\ds in all, begun beside the initial state\)"), ("eval step", "")):
        i = out.index(f"compiling the {what}...")
        assert re.fullmatch(rf"compiling the {what}: done in \d+\.\ds{began}", out[i + 1])
    first_step = next(i for i, line in enumerate(out) if line.startswith("step 1/2 "))
    assert out.index("compiling the train step...") < first_step


@pytest.mark.integration
def test_the_train_step_compiles_beside_the_initial_state_and_its_first_call_compiles_nothing(tmp_path, compile_log):
    """zoo.compiling.Ahead with the loop's abstract state and batch: JAX's compile log has the train
    step's lowering (its state begins with the int32 step) once, in the background thread, and the
    eval step's in the main thread; nothing else is lowered as ``jit(wrapped)`` (the steps' wrapper)."""
    train.fit(quick(num_train_steps=2, **{"schedule.warmup_epochs": 0.0}), tmp_path)
    steps = [(thread, message.split("global shapes and types (")[1][:18]) for thread, message in compile_log()
             if message.startswith("Compiling jit(wrapped) with")]
    assert steps == [("zoo-compile-ahead", "ShapedArray(int32["), ("MainThread", "ShapedArray(float3")]


@pytest.mark.parametrize("overrides, error", [({"data.image_size": 32}, "input size 32x32"),
                                              ({"transfer.init_from": "missing.safetensors"}, "no such weight file")])
def test_a_run_that_fails_before_saving_leaves_nothing(tmp_path, caplog, overrides, error):
    workdir = tmp_path / "w"
    with caplog.at_level(logging.INFO, logger="train"), pytest.raises((ValueError, FileNotFoundError), match=error):
        train.fit(quick(**overrides), workdir)
    assert not workdir.exists()  # no checkpoints/ folder, no lock file: the run made the folder, wrote nothing
    if "transfer.init_from" in overrides:  # refused before it compiled anything
        assert "compiling the initial state..." not in caplog.messages


def test_rerunning_a_finished_run_changes_nothing(trained_lenet, tmp_path):
    source, r = trained_lenet
    workdir = tmp_path / "w"
    shutil.copytree(source, workdir)
    before = train.restore(workdir, checkpoint_step="latest")[1]
    files = snapshot(workdir)
    again = train.fit(quick(), workdir)
    assert again == r   # result.json's, as written (once its train metrics and time were overwritten)
    after = train.restore(workdir, checkpoint_step="latest")[1]
    jax.tree.map(np.testing.assert_array_equal, before, after)
    changed = {k for k in set(files) | set(snapshot(workdir)) if files.get(k) != snapshot(workdir).get(k)}
    assert changed <= {"train.log"}   # metrics.jsonl got no second eval row, result.json is as it was


def test_a_finished_run_stopped_in_its_last_evaluation_is_evaluated_again(trained_lenet, tmp_path):
    """A signal during the final evaluation wrote result.json with 'interrupted': every later run of
    the command then returned it, saying 'interrupted' and exiting 143 (a scheduler re-queuing on 143
    would loop on a finished run). It is evaluated again now and its result written."""
    source, r = trained_lenet
    workdir = tmp_path / "w"
    shutil.copytree(source, workdir)
    stored = json.loads((workdir / "result.json").read_text())
    (workdir / "result.json").write_text(json.dumps({**stored, "interrupted": "SIGTERM"}))
    again = train.fit(quick(), workdir)
    assert again.interrupted is None and again.step == r.step
    assert again.eval["top1"] == pytest.approx(r.eval["top1"])
    assert json.loads((workdir / "result.json").read_text())["interrupted"] is None


def test_a_run_shorter_than_its_workdir_is_refused(trained_lenet, tmp_path):
    """Once: '16 steps ...', nothing trained, 'val top-1 nan', result.json's metrics wiped."""
    workdir = tmp_path / "w"
    shutil.copytree(trained_lenet[0], workdir)
    files = snapshot(workdir)
    with pytest.raises(checkpoint.WorkdirMismatchError, match=r"^num_epochs / num_train_steps: .* is already at step "
                                                               r"248 \(epoch 4\), past the 124 steps asked for"):
        train.fit(quick(num_epochs=2), workdir)
    assert {k: v for k, v in snapshot(workdir).items() if k != "train.log"} == \
        {k: v for k, v in files.items() if k != "train.log"}


def test_a_result_json_that_cannot_be_written_is_refused_before_training(trained_lenet, tmp_path):
    """Once the run trained to its end, committed its checkpoint, then failed writing result.json."""
    workdir = tmp_path / "w"
    shutil.copytree(trained_lenet[0], workdir)
    (workdir / "result.json").unlink()
    (workdir / "result.json").mkdir()          # cannot be opened for writing (as root, permissions would not stop us)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    with pytest.raises(OSError, match=r"^cannot write the run's .*result\.json \(it is a folder, not a file\); nothing was changed"):
        train.fit(quick(num_epochs=5), workdir)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_workdir_of_another_architecture_is_refused_untouched(trained_lenet):
    workdir, _ = trained_lenet
    before = snapshot(workdir)
    with pytest.raises(checkpoint.WorkdirMismatchError, match="lenet5.*lenet5_classic"):
        train.fit(quick(model="lenet5_classic"), workdir)
    with pytest.raises(checkpoint.WorkdirMismatchError, match="5 classes"):
        train.fit(quick(**{"data.name": "synthetic", "data.synthetic_num_classes": 5}), workdir)
    assert snapshot(workdir) == before


@pytest.mark.integration
def test_non_finite_loss_stops_with_the_last_finite_state_checkpointed(tmp_path, capsys):
    """An absurd learning rate overflows the parameters at the first update: every later step is
    non-finite, skipped by the step, reported at the first log step, and the run stops there."""
    c = quick(num_train_steps=6, log_every_steps=3, **{"optimizer.name": "sgd", "optimizer.learning_rate": 1e38,
                                                      "schedule.warmup_epochs": 0.0, "schedule.name": "constant"})
    with pytest.raises(loop.NonFiniteLossError, match=r"step 3: 2 step\(s\) with a non-finite loss"):
        train.fit(c, tmp_path)
    assert "non-finite loss or gradient" in capsys.readouterr().out
    model, variables = train.restore(tmp_path, checkpoint_step="latest", use_ema=False)
    assert train.load(tmp_path, "latest").step == 3
    leaves = jax.tree.leaves(variables)
    assert all(np.isfinite(x).all() for x in leaves)
    assert max(float(np.abs(x).max()) for x in leaves) > 1e30  # the one (finite) update that was applied


def test_a_state_made_non_finite_by_a_finite_gradient_stops_the_run_and_claims_no_checkpoint(tmp_path):
    """An update that overflows (finite loss and gradients: the step cannot skip it) once left a run
    ending 'done ... checkpoints in' a folder never written, or 'the last finite state is checkpointed'
    with none: the save now stops the run, saying what was and was not written."""
    import types

    import jax.numpy as jnp

    from train import parallel

    state = {"params": {"w": jnp.array([1.0, jnp.inf])}, "step": jnp.asarray(4)}
    run = types.SimpleNamespace(plan=parallel.make_plan("shard_map", 1), steps_per_epoch=10)
    state_loop = types.SimpleNamespace(meta={}, step=4, best_top1=0.0, best_step=0, state=state, pending=[],
                                       eval_due=False, data=types.SimpleNamespace(get_state=lambda: {}))
    ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
    try:
        with pytest.raises(loop.NonFiniteLossError, match=r"^step 4: the train state has non-finite values although "
                                                          r"the loss and gradients were finite .* and no checkpoint was "
                                                          r"written before$"):
            loop._save(run, state_loop, ckpt)
    finally:
        ckpt.close()
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.integration
def test_resnet20_config_runs_two_steps_on_mock_cifar10(tmp_path):
    import tensorflow_datasets as tfds
    c = importlib.import_module("configs.resnet20_cifar10").get_config()
    c.num_train_steps = 2
    c.batch_size = 16
    c.eval_batch_size = 32
    with tfds.testing.mock_data(num_examples=64):
        r = train.fit(c, tmp_path)
    assert r.step == 2 and r.eval["count"] == 64 and np.isfinite(r.train["loss"])


def test_a_result_json_without_checkpoints_is_refused_untouched(tmp_path):
    """A user's own result.json (or that of a run whose checkpoints were removed) was replaced
    without a word at the end of a fresh run."""
    (tmp_path / "result.json").write_text('{"mine": 1}')
    with pytest.raises(checkpoint.WorkdirMismatchError, match=rf"^{tmp_path / 'result.json'} is not the result of a "
                                                               r"run in this workdir \(it holds no checkpoint\); nothing "
                                                               r"was changed: move it away"):
        train.fit(quick(**{"data.name": "synthetic", "num_train_steps": 2, "schedule.warmup_epochs": 0.0}), tmp_path)
    assert (tmp_path / "result.json").read_text() == '{"mine": 1}' and not (tmp_path / "checkpoints").exists()


def test_resuming_with_another_learning_rate_says_which_fields_changed(trained_lenet, tmp_path, caplog):
    """It went on without a word, and the checkpoints' meta then gave the new values for the whole run."""
    workdir = tmp_path / "w"
    shutil.copytree(trained_lenet[0], workdir)
    lr = quick().optimizer.learning_rate   # what the fixture's run was trained with
    with caplog.at_level(logging.WARNING, logger="train"):
        train.fit(quick(**{"optimizer.learning_rate": 0.5, "label_smoothing": 0.1}), workdir)
    said = [r.getMessage() for r in caplog.records if "differs from the checkpoint's" in r.getMessage()]
    assert said == [f"resuming from step 248 with a config that differs from the checkpoint's: label_smoothing 0.0 -> "
                    f"0.1; optimizer.learning_rate {lr!r} -> 0.5 (steps 249 on use the new values; each checkpoint's "
                    f"meta records the config it was saved under)"]


def test_a_resume_the_input_pipeline_refuses_says_nothing_is_taken_first(trained_lenet, tmp_path, caplog):
    """Another seed (or num_workers, batch size, ...) is refused by the saved input-iterator state; the
    warning "differs ... steps 249 on use the new values" came first and said the opposite (readme_probe)."""
    workdir = tmp_path / "w"
    shutil.copytree(trained_lenet[0], workdir)
    with caplog.at_level(logging.WARNING, logger="train"), pytest.raises(ValueError, match="different pipeline"):
        train.fit(quick(**{"seed": 7}), workdir)
    assert not [r for r in caplog.records if "differs from the checkpoint's" in r.getMessage()]


@pytest.mark.integration   # ~25 s on 2 CPU cores (a float16 compile)
def test_float16_runs_through_the_loss_scales_calibration(tmp_path):
    """The first steps of dynamic loss scaling overflow by design (the scaled gradients of mobilenet_v2
    at 32x32, the case reported, exceed float16's 65504 at 2**15 in five steps; SqueezeNet 1.1's at
    64x64 in the first, its float16 step compiling in a quarter of mobilenet_v2's time): they were
    counted as non-finite steps, and the default stop_on_nonfinite stopped every such float16 run at
    step 1."""
    from configs import default

    c = default.get_config()
    c.update_from_flattened_dict({"model": "squeezenet1_1", "data.name": "synthetic", "data.image_size": 64,
                                  "data.synthetic_num_examples": 64, "batch_size": 8, "eval_batch_size": 8,
                                  "num_train_steps": 6, "log_every_steps": 1, "precision": "float16",
                                  "schedule.warmup_epochs": 0.0})
    r = train.fit(c, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [x for x in rows if x["split"] == "train"]
    assert r.step == 6 and len(train_rows) == 6
    assert train_rows[0]["overflow_steps"] == 1 and train_rows[0]["nonfinite_steps"] == 0
    assert all(x["loss"] is not None and np.isfinite(x["loss"]) for x in train_rows)   # the overflow's loss is finite
    scales = [x["loss_scale"] for x in train_rows]
    assert scales[0] == 2.0 ** 15 and all(b in (a, a / 2) for a, b in zip(scales, scales[1:]))


@pytest.mark.integration   # two LeNet-5 runs of 4 epochs
@pytest.mark.parametrize("at_call, epoch", [(3, 2), (7, 4)])   # the second evaluation; the final one
def test_a_signal_during_an_evaluation_checkpoints_at_once_and_the_resume_evaluates_first(trained_lenet, tmp_path,
                                                                                          monkeypatch, capsys,
                                                                                          at_call, epoch):
    """SIGTERM during an evaluation acted only after the whole split (minutes of ImageNet on a CPU, past a
    scheduler's grace period: the steps since the last checkpoint were lost to its SIGKILL). The pass is
    abandoned at the next batch, the state saved unevaluated; the resumed run evaluates that step first,
    so metrics.jsonl, the best step, the checkpoint's ranking, the summary line and result.json's train
    figures equal the uninterrupted run's."""
    import os
    import signal

    from train import evaluation

    compile_eval, calls = evaluation.compile_eval, []

    def signalling_compile_eval(*args, **kwargs):
        fn = compile_eval(*args, **kwargs)

        def eval_fn(variables, batch):
            calls.append(1)
            if len(calls) == at_call:   # the first batch of an evaluation (of 2 batches each)
                os.kill(os.getpid(), signal.SIGTERM)
            return fn(variables, batch)
        return eval_fn

    monkeypatch.setattr(evaluation, "compile_eval", signalling_compile_eval)
    workdir, keep_all = tmp_path / "w", {"checkpoint.keep": 10}
    first = train.fit(quick(**keep_all), workdir)
    assert first.interrupted == "SIGTERM" and len(calls) == at_call   # the second batch never ran
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    eval_step = max(ckpt.steps())
    meta = ckpt.meta(eval_step)
    assert meta["eval_due"] is True and "val_top1" not in meta["metrics"]
    assert f"SIGTERM received during the evaluation of step {eval_step}" in capsys.readouterr().out
    monkeypatch.setattr(evaluation, "compile_eval", compile_eval)
    second = train.fit(quick(**keep_all), workdir)
    assert f"epoch   {epoch}.00 | train (62 steps) loss " in capsys.readouterr().out   # the interrupted run's
    reference_dir, reference = trained_lenet

    def rows(w):
        return [(r["step"], r["split"], r["loss"], r.get("top1")) for r in
                map(json.loads, (w / "metrics.jsonl").read_text().splitlines())]

    assert rows(workdir) == rows(reference_dir)
    assert (second.best_step, second.best_top1) == (reference.best_step, reference.best_top1)
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    assert ckpt.best_step() == checkpoint.Checkpointer(reference_dir, read_only=True).best_step()
    meta, ref_eval = ckpt.meta(eval_step), [r for r in rows(reference_dir) if r[:2] == (eval_step, "eval")]
    assert meta["eval_due"] is False and [meta["metrics"]["val_top1"]] == [r[3] for r in ref_eval]
    assert second.train == reference.train and second.eval == reference.eval
