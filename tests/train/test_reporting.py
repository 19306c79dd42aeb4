"""train.reporting: the progress display refreshes at least every second on a terminal and prints a
plain line at least every PLAIN_EVERY_S seconds otherwise, between the train reports; the run's
opening line; a resumed run continues one timeline (metrics.jsonl, TensorBoard)."""
import numpy as np

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
