"""train.logs: a command's console shows our messages and other libraries' warnings, one line each,
never a traceback; the workdir's log file gets everything, tracebacks included; orbax's own reports
and the tracebacks behind a one-line error go to the file only."""
import logging
import threading

import pytest

from train import logs


@pytest.fixture
def command_logging(tmp_path, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(logging.getLogger("absl"), "level", logging.getLogger("absl").level)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    path = logs.for_command(tmp_path / "w")
    yield path
    logs.close_log_file()
    for h in [h for h in root.handlers if getattr(h, "_zoo_handler", False)]:
        root.removeHandler(h)


def _record(name, level, msg, pathname="x.py", exc=None):
    record = logging.LogRecord(name, level, pathname, 1, msg, (), exc)
    logging.getLogger(name).handle(record)


def test_console_and_log_file(command_logging, capsys):
    assert command_logging.name == logs.LOG_FILE
    try:
        raise OSError(28, "No space left on device")
    except OSError as e:
        error = e
    logging.getLogger("train").info("compiling")
    logging.getLogger("train.checkpoint").warning("checkpoint 3 cannot be restored")
    _record("absl", logging.ERROR, "_SignalingThread.run() raised", "/site-packages/orbax/checkpoint/future.py",
            (OSError, error, error.__traceback__))
    _record("jax._src.xla_bridge", logging.WARNING, "no GPU found")
    _record("jax._src.xla_bridge", logging.INFO, "backend notice")
    logs.details("the run stopped", error)
    assert capsys.readouterr().err.splitlines() == ["compiling", "warning: checkpoint 3 cannot be restored",
                                                    "warning: no GPU found"]
    text = command_logging.read_text()
    for line in ("INFO train: compiling", "ERROR absl: _SignalingThread.run() raised", "WARNING jax._src.xla_bridge: "
                 "no GPU found", "INFO train.details: the run stopped: [Errno 28] No space left on device"):
        assert line in text
    assert text.count("Traceback (most recent call last)") == 2


def test_quiet_drops_only_the_given_messages(caplog):
    with caplog.at_level(logging.WARNING), logs.quiet("absl", "Variant folder"):
        logging.getLogger("absl").warning("Variant folder %s has no dataset_info.json", "/nowhere")
        logging.getLogger("absl").warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    caplog.clear()
    with caplog.at_level(logging.WARNING), logs.quiet("train"):   # no prefixes: every message of that logger
        logging.getLogger("train").warning("optimizer.momentum=%r is not read", 0.5)
    logging.getLogger("train").warning("after")
    assert [r.getMessage() for r in caplog.records] == ["after"]


def _unretrieved_task_error(filename: str) -> None:
    """Run a task that raises and drop it without retrieving its exception, as orbax's gathered
    writes are after the first of them fails; asyncio reports it when the task is collected. The
    coroutine is compiled as if defined in ``filename``."""
    import asyncio
    import gc
    namespace = {}
    exec(compile("async def _open_and_write():\n    raise ValueError('RESOURCE_EXHAUSTED: No space left on device')\n",
                 filename, "exec"), namespace)

    async def main():
        task = asyncio.ensure_future(namespace["_open_and_write"]())
        await asyncio.sleep(0)  # the task runs and fails; nobody awaits it
        await asyncio.sleep(0)
        del task

    asyncio.run(main())
    gc.collect()


def test_orbax_tasks_never_retrieved_go_to_the_log_file_only(command_logging, capsys):
    """What CI printed after a save ran out of space: asyncio's "Task exception was never retrieved"
    for orbax's other writes, as extra ``error:`` lines after our one (tests/train/test_cli.py)."""
    _unretrieved_task_error("/venv/lib/python3.11/site-packages/orbax/checkpoint/_src/serialization/type_handlers.py")
    assert capsys.readouterr().err == ""
    assert "Task exception was never retrieved" in command_logging.read_text()
    _unretrieved_task_error("/home/user/research/mine.py")  # anyone else's still reaches the console
    assert capsys.readouterr().err.startswith("error: Task exception was never retrieved")


def _unretrieved_future_error(message: str) -> None:
    """A bare asyncio future that fails and is dropped unretrieved, as tensorstore's writes are when a
    save runs out of space; asyncio reports it when the future is collected."""
    import asyncio
    import gc

    async def main():
        future = asyncio.get_running_loop().create_future()
        future.set_exception(ValueError(message))
        del future

    asyncio.run(main())
    gc.collect()


def test_tensorstore_futures_never_retrieved_in_a_checkpoint_folder_go_to_the_log_file_only(command_logging, capsys):
    """What CI printed after a save filled a real tmpfs (tests/train/test_cli.py, mount-full): asyncio's
    "Future exception was never retrieved" for a tensorstore write into orbax's temporary folder, which
    names no orbax source file."""
    _unretrieved_future_error('RESOURCE_EXHAUSTED: Error writing "params.conv2.kernel/0.0.0.0" in OCDBT database at '
                              'local file "/tmp/w/checkpoints/30.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/'
                              'ocdbt.process_0/": Failed to write 186968 bytes to file 10: No space left on device')
    assert capsys.readouterr().err == ""
    assert "Future exception was never retrieved" in command_logging.read_text()
    _unretrieved_future_error("RESOURCE_EXHAUSTED: Error writing local file \"/tmp/mine/data.bin\"")  # not a checkpoint
    assert capsys.readouterr().err.startswith("error: Future exception was never retrieved")


def test_tensorstore_reads_never_retrieved_stay_off_the_console_without_a_command(caplog):
    """What CI printed once after a truncated checkpoint was read from Python (train.load, no command's
    logging; tests/train/test_checkpoint.py): asyncio's report of orbax's other reads, collected after
    the first one failed, naming only the checkpoint folder and tensorstore's spec. Installed with the
    first Checkpointer; anyone else's unretrieved exception still reaches stderr."""
    from train import logs

    logs.ignore_closed_loop_callbacks()
    with caplog.at_level(logging.DEBUG):  # the asyncio logger's own filter decides, before any handler
        _unretrieved_future_error('OUT_OF_RANGE: Error opening "zarr" driver: Error reading "params.conv1.bias/'
                                  '.zarray" in OCDBT database at local file "/tmp/w/checkpoints/248/state/" '
                                  '[tensorstore_spec=\'{}\']')
        assert [r.name for r in caplog.records if r.name == logs.DETAILS or r.levelno >= logging.WARNING] == \
            [logs.DETAILS]
        caplog.clear()
        _unretrieved_future_error("OUT_OF_RANGE: Error reading local file \"/tmp/mine/data.bin\"")  # not a checkpoint
        assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == ["asyncio"]


def test_what_the_console_gets_as_plain_text_is_in_the_log_file_too(command_logging, capsys):
    """README: "every message also goes to train.log"; the progress lines, the run's messages (compiling
    the step, a signal's checkpoint) and the final ``done:`` line were printed only."""
    from train import reporting

    progress = reporting.Progress(total=40, initial=0, steps_per_epoch=10, enabled=True)
    progress.update(5, {"loss": 2.3, "top1": 0.1, "learning_rate": 0.01}, 1000.0)
    progress.message("compiling the train step...")
    logs.say("done: step 40")
    out = capsys.readouterr()
    assert out.out.splitlines()[-2:] == ["compiling the train step...", "done: step 40"] and out.err == ""
    text = command_logging.read_text()
    for line in ("INFO train.transcript: step 5/40 epoch 0.50 loss 2.3000", "INFO train.transcript: compiling the "
                 "train step...", "INFO train.transcript: done: step 40"):
        assert line in text


def test_the_transcript_stays_out_of_a_library_users_logging(capsys, monkeypatch):
    """A library user's handler on the root logger at INFO would show every printed line twice."""
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    handler = Collect(logging.INFO)
    root.addHandler(handler)
    try:
        logs.say("done: step 1")
        logging.getLogger("train").info("a message of ours")
    finally:
        root.removeHandler(handler)
    assert capsys.readouterr().out == "done: step 1\n" and seen == ["a message of ours"]


def test_a_log_file_that_fails_is_turned_off_with_one_line(command_logging, capsys):
    """A full disk that also stopped train.log printed logging's '--- Logging error ---' traceback for
    every record (about 490 lines) around the one error line, which pointed to details never written."""
    import errno

    handler = next(h for h in logging.getLogger().handlers
                   if isinstance(h, logging.FileHandler) and h.baseFilename == str(command_logging))

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    capsys.readouterr()
    handler.stream = Full()
    assert logs.log_file_written(command_logging)
    for i in range(5):
        logging.getLogger("train").warning("message %d", i)
    err = capsys.readouterr().err
    assert "Logging error" not in err and err.count("cannot write the log file") == 1
    assert f"warning: cannot write the log file {command_logging} (No space left on device); logging to the console only" in err
    assert not logs.log_file_written(command_logging)


def test_a_fifo_named_train_log_is_not_opened(tmp_path):
    """Opening a FIFO for writing waits for a reader: the run sat there before printing anything. A
    child process, so that the old behaviour fails the test by its timeout, not a hang."""
    import os
    import subprocess
    import sys

    from helpers import ROOT, child_env

    (tmp_path / "w").mkdir()
    os.mkfifo(tmp_path / "w" / "train.log")
    code = "import sys; from train import logs; print(logs.for_command(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w")], capture_output=True, text=True, timeout=120,
                       env=child_env(1), cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "None"
    assert f"cannot write the log file {tmp_path / 'w' / 'train.log'} (it is not a regular file)" in r.stderr


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), BrokenPipeError(32, "Broken pipe")])
def test_a_console_that_cannot_be_written_is_turned_off_and_said_once(capsys, error):
    """A run's stdout on a full disk or a closed pipe: the stream goes quiet and the run goes on; without
    a log file (a search) the one warning goes to stderr (it went nowhere: reaudit_probe)."""
    class Failing:
        def write(self, text):
            raise error

        def flush(self):
            raise error

    out = logs.ForgivingStream(Failing(), "stdout")
    assert out.write("a row\n") == 6 and out.write("another\n") == 8
    out.flush()
    assert not [h for h in logging.getLogger(logs.TRANSCRIPT).handlers if getattr(h, "_zoo_handler", False)]
    assert capsys.readouterr().err == (f"warning: stdout cannot be written ({error.strerror}); going on, the results "
                                       f"are written to files\n")
