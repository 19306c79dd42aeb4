"""train.reporting: the progress display refreshes at least every second on a terminal and prints a
plain line at least every PLAIN_EVERY_S seconds otherwise, between the train reports; the run's
opening line; a resumed run continues one timeline (metrics.jsonl, TensorBoard)."""
import numpy as np
import pytest

from train import reporting


def _metrics(loss):
    return {"loss": np.float32(loss), "top1": np.float32(0.5), "top5": np.float32(0.9), "grad_norm": np.float32(1.0),
            "learning_rate": np.float32(0.1), "examples": np.float32(64), "finite": np.bool_(True)}


def test_plain_progress_prints_between_reports_when_due(tmp_path, capsys):
    report = reporting.Reporter(tmp_path, total_steps=100, start=0, steps_per_epoch=50, batch_size=64, t_start=0.0,
                                enabled=True)
    assert report.progress.bar is None and report.progress.every_s == reporting.Progress.PLAIN_EVERY_S
    report.tick(3, [_metrics(2.0), _metrics(1.0)])
    assert capsys.readouterr().out == ""  # not due yet
    report.progress.t_shown -= reporting.Progress.PLAIN_EVERY_S
    report.tick(4, [_metrics(2.0), _metrics(1.0)])
    line = capsys.readouterr().out
    assert line.startswith("step 4/100 epoch 0.08 loss 1.5000 acc 0.5000")
    report.tick(5, [_metrics(2.0)])
    assert capsys.readouterr().out == ""  # just shown
    report.close()
    assert not (tmp_path / "metrics.jsonl").read_text()  # the metrics log keeps to the train reports


def test_a_terminal_refreshes_every_second():
    progress = reporting.Progress(total=10, initial=0, steps_per_epoch=5, enabled=True)
    assert progress.TERMINAL_EVERY_S == 1.0
    progress.every_s = progress.TERMINAL_EVERY_S  # as with a tty
    progress.t_shown -= 1.0
    assert progress.due()


def _events(folder):
    """The tensorboardX Event records of every event file under ``folder`` (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    out = []
    for f in sorted(folder.rglob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            n = int.from_bytes(data[i:i + 8], "little")
            out.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
            i += 12 + n + 4
    return out


def test_a_resumed_run_continues_one_timeline(tmp_path):
    """Resumed from checkpoint 10 after a crash at 25: the rows of steps 11-25 were kept beside the
    repeated ones (two rows per step, no marker); they move to metrics.abandoned.jsonl (kept), and
    TensorBoard is told to purge its events after step 10."""
    import json

    from train.reporting import MetricsLog

    rows = [{"step": s, "split": split, "loss": 1.0} for s, split in [(10, "train"), (10, "eval"), (20, "train"),
                                                                         (25, "train")]]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = MetricsLog(tmp_path, True, start=10)
    m.write(20, "train", {"loss": 0.5})
    m.close()
    read = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"], r["loss"]) for r in read] == [(10, "train", 1.0), (10, "eval", 1.0),
                                                                  (20, "train", 0.5)]
    aside = [json.loads(x) for x in (tmp_path / "metrics.abandoned.jsonl").read_text().splitlines()]
    assert aside == rows[2:]
    starts = [e for e in _events(tmp_path / "tensorboard") if e.HasField("session_log")]
    assert [(e.step, e.session_log.status) for e in starts] == [(11, 1)]   # SessionLog.START at the purge step


def test_images_per_s_counts_the_timed_training_steps_only(tmp_path, monkeypatch):
    """Once the first row counted the compiling step's images over the time after it, the row after an
    evaluation divided by the evaluation's time too (4-250x too low), and a resumed run's first row
    counted the steps restored from its checkpoint over the time since the resume."""
    import json

    clock = [0.0]   # train.reporting's time.perf_counter, set by hand (no sleeps)
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: clock[0])
    report = reporting.Reporter(tmp_path, total_steps=200, start=100, steps_per_epoch=50, batch_size=8,
                                t_start=0.0, enabled=True)
    clock[0] = 10.0
    report.restart_clock(untimed_steps=1)   # after the first (compiling) step, 100 -> 101
    clock[0] = 20.0
    restored = [_metrics(1.0)] * 5   # a resumed run: 5 steps before the interruption, not timed here
    report.train(111, restored + [_metrics(1.0)] * 11)
    clock[0] = 60.0                  # 40 s of evaluation
    report.eval(111, {"loss": 1.0, "top1": 0.5, "top5": 0.9, "count": 100}, 0.5, 111)
    clock[0] = 70.0
    report.train(121, [_metrics(1.0)] * 10)
    report.close()
    rates = [r["images_per_s"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "train"]
    assert rates == [8.0, 8.0]   # 10 steps x 8 images / 10 s, both times


def test_the_summary_gives_the_steps_since_the_last_evaluation_and_names_the_split(tmp_path, capsys):
    """The line after an evaluation once gave the last log window's train loss as the epoch's, said
    'val' for a test split, named neither its size nor the EMA, and printed top-5 1.0 for 3 classes."""
    report = reporting.Reporter(tmp_path, total_steps=100, start=0, steps_per_epoch=4, batch_size=64, t_start=0.0,
                                enabled=True, eval_name="test", ema=True, num_classes=3)
    report.train(2, [_metrics(3.0), _metrics(1.0)])
    report.train(4, [_metrics(0.5), _metrics(0.5)])
    capsys.readouterr()
    train = report.eval(4, {"loss": 0.25, "top1": 0.75, "top5": 1.0, "count": 1234}, 0.75, 4)
    assert train["steps"] == 4 and train["loss"] == 1.25   # (3 + 1 + 0.5 + 0.5) / 4, not the last row's 0.5
    line = capsys.readouterr().out
    assert line.startswith("epoch   1.00 | train (4 steps) loss 1.2500 acc 0.5000 | test (1,234 images, EMA) "
                           "loss 0.2500 acc 0.7500 top5 n/a (3 classes) | best 0.7500 (step 4)")
    assert report.eval(4, {"loss": 0.25, "top1": 0.75, "top5": 1.0, "count": 1234}, 0.75, 4) == {}  # none since
    report.close()
    assert "top5 0.9000" in reporting.epoch_summary(4, 4, {}, {"loss": 1, "top1": 1, "top5": 0.9, "count": 1}, 1, 4,
                                                    1.0, num_classes=6)


def test_tensorboard_is_flushed_every_second_and_non_finite_values_are_null(tmp_path, monkeypatch):
    """tensorboardX flushed its events every two minutes: a kill -9 lost them while metrics.jsonl,
    line-buffered, kept its rows (a hole no resumed run fills): flush_secs=1 (tensorboardX's own knob).
    NaN was written bare (not JSON) and sent to TensorBoard."""
    import json

    import tensorboardX

    made = []

    class Writer(tensorboardX.SummaryWriter):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tensorboardX, "SummaryWriter", Writer)
    m = reporting.MetricsLog(tmp_path, True)
    assert made[0]["flush_secs"] == 1
    m.write(5, "train", {"loss": float("nan"), "top1": 0.5, "nonfinite_steps": 5})
    m.close()
    scalars = [(e.step, v.tag, v.simple_value) for e in _events(tmp_path / "tensorboard") for v in e.summary.value]
    assert scalars == [(5, "train/top1", 0.5), (5, "train/nonfinite_steps", 5.0)]
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}")) == {
        "step": 5, "split": "train", "loss": None, "top1": 0.5, "nonfinite_steps": 5.0}


def test_an_unfinished_last_line_is_ended_before_the_next_row(tmp_path):
    """A fragment (a short write on a full disk) had the resumed run's next row glued onto it."""
    import json

    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "split": "train", "loss": 1.0}\n{"step": 99, "split": "tr')
    m = reporting.MetricsLog(tmp_path, True, start=10)
    m.write(11, "train", {"loss": 0.5})
    m.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[1] == '{"step": 99, "split": "tr' and json.loads(lines[2]) == {"step": 11, "split": "train", "loss": 0.5}


def test_a_fresh_run_sets_aside_the_rows_of_one_whose_checkpoints_are_gone(tmp_path):
    """Removing checkpoints/ to start over (as the refusal of another model suggests) gave one
    metrics.jsonl of two runs, the new one from step 1 again, and two overlapping TensorBoard streams."""
    import json

    old = reporting.MetricsLog(tmp_path, True)
    old.write(62, "train", {"loss": 1.0})
    old.close()
    new = reporting.MetricsLog(tmp_path, True, start=0)
    new.write(5, "train", {"loss": 2.0})
    new.close()
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [5]
    assert json.loads((tmp_path / "metrics.abandoned.jsonl").read_text())["step"] == 62
    starts = [e.step for e in _events(tmp_path / "tensorboard") if e.HasField("session_log")]
    assert starts == [1]   # TensorBoard hides the earlier run's events from step 1 on


def test_a_loss_scale_overflow_is_not_a_non_finite_step():
    """float16: a step skipped because the scaled gradients overflowed (finite loss) counted as a
    non-finite step, and stop_on_nonfinite stopped the run at the scale's first calibration."""
    overflow = {**_metrics(3.0), "finite": np.bool_(False), "overflow": np.bool_(True), "grad_norm": np.float32(np.inf),
                "loss_scale": np.float32(2.0 ** 15)}
    diverged = {**_metrics(np.nan), "finite": np.bool_(False), "overflow": np.bool_(False),
                "loss_scale": np.float32(2.0 ** 14)}
    m = reporting.mean_metrics([overflow, {**_metrics(1.0), "overflow": np.bool_(False), "loss_scale": np.float32(2.0 ** 14)},
                                diverged])
    assert (m["nonfinite_steps"], m["overflow_steps"], m["loss_scale"]) == (1, 1, 2.0 ** 14)
    assert m["loss"] == 2.0 and m["grad_norm"] == 1.0   # the overflow's finite loss counts; its gradient norm not
    assert "overflow_steps" not in reporting.mean_metrics([_metrics(1.0)])   # float32 / bfloat16: no loss scale
