"""train.reporting: the progress display refreshes at least every second on a terminal and prints a
plain line at least every PLAIN_EVERY_S seconds otherwise, between the train reports; the run's
opening line."""
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
