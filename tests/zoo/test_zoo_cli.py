"""The command lines share zoo.cli: ``--help`` exits 0 with the usage, the options and an epilog (the
commonest fields, where the full list is), a bad argument is one ``error:`` line with status 2; and
``python -m zoo`` prints its table from the stored counts, without tracing any model."""
import json
import subprocess
import sys

import pytest

import zoo
from helpers import ROOT, child_env
from train import evaluation, published, transfer
from train import inspect as inspect_command
from train.search import cli as search_command
from zoo import __main__ as zoo_command
from zoo import export, predict
from zoo.convert import __main__ as convert_command

IN_PROCESS = {"python -m train.evaluate": evaluation.main, "python -m train.inspect": inspect_command.main,
              "python -m train.search": search_command.main, "python -m train.transfer": transfer.main,
              "python -m zoo": zoo_command.main, "python -m zoo.convert": convert_command.main,
              "python -m zoo.predict": predict.main, "python -m zoo.export": export.main,
              "python -m train.evaluate --pretrained": published.main}


@pytest.mark.parametrize("prog", sorted(IN_PROCESS))
def test_help_exits_0_with_usage_and_options(prog, capsys):
    with pytest.raises(SystemExit) as e:
        IN_PROCESS[prog](["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.startswith(f"usage: {prog} ") and "options:" in out and "-h, --help" in out
    assert "example" in out  # the epilog: how it is used


@pytest.mark.parametrize("prog", sorted(IN_PROCESS))
def test_a_bad_argument_is_one_error_line(prog, capsys):
    with pytest.raises(SystemExit) as e:
        IN_PROCESS[prog](["--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert f"see: {prog}" in err


@pytest.mark.integration
@pytest.mark.parametrize("module", ["train", "train.evaluate", "train.inspect", "train.search", "train.transfer", "zoo",
                                    "zoo.convert", "zoo.predict", "zoo.export"])
def test_every_command_help_exits_0(module):
    p = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                       env=child_env(1), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: python -m {module} ") and not p.stderr
    if module == "train":  # the commonest config fields, their defaults, and where every field is
        for text in ("--config.data.name='mnist5k'", "--config.batch_size=128", "--config.optimizer.learning_rate=0.1",
                     "every field, its default and what it means: configs/default.py"):
            assert text in p.stdout


def test_the_model_table_comes_from_the_stored_counts(monkeypatch):
    def no_tracing(name):
        raise AssertionError(f"traced {name}")

    monkeypatch.setattr(zoo_command, "count", no_tracing)
    table = zoo_command.model_table().splitlines()
    assert table[:2] == zoo_command.HEADER and len(table) == 2 + len(zoo.list_models())
    assert zoo_command.main(["resnet1*"]) == 0


def test_no_model_matches(capsys):
    assert zoo_command.main(["nothing*"]) == 2
    assert capsys.readouterr().err == "error: no model name matches 'nothing*'; python -m zoo lists them all\n"


@pytest.mark.parametrize("pattern, message", [
    ("resnt50", "error: no model name matches 'resnt50'; closest: resnet50, "),
    ("lenet55", "error: no model name matches 'lenet55'; closest: lenet5, "),
    ("", "error: pattern '': empty; give a name or a shell-style pattern ('resnet*'), or none for all models\n"),
])
def test_a_misspelt_name_gets_the_closest_names_and_an_empty_pattern_is_refused(pattern, message, capsys):
    """No "closest" once (zoo.convert and --config.model had it), and '' listed every model."""
    assert zoo_command.main([pattern]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.endswith("python -m zoo lists them all\n" if pattern else message)
    assert len(err.splitlines()) == 1


def test_a_damaged_counts_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """Once a JSONDecodeError traceback."""
    counts = tmp_path / "model_counts.json"
    counts.write_text("{")
    monkeypatch.setattr(zoo_command, "COUNTS", counts)
    assert zoo_command.main(["lenet5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {counts}: damaged (JSONDecodeError: ") and len(err.splitlines()) == 1
    assert err.endswith("); python -m zoo --update-counts writes it again\n")


def test_update_counts_with_a_pattern_keeps_the_other_models_counts(tmp_path, monkeypatch, capsys):
    """``--update-counts`` once recounted and rewrote every model whatever the pattern."""
    stored = json.loads(zoo_command.COUNTS.read_text())
    counts = tmp_path / "model_counts.json"
    counts.write_text(json.dumps(stored))
    monkeypatch.setattr(zoo_command, "COUNTS", counts)
    monkeypatch.setattr(zoo_command, "count", lambda name: (1, 2))   # a recount, without tracing
    assert zoo_command.main(["lenet5*", "--update-counts"]) == 0
    assert capsys.readouterr().out == f"wrote {counts}\n"
    recounted = zoo.list_models("lenet5*")
    assert recounted and json.loads(counts.read_text()) == {
        n: {"params": 1, "macs": 2} if n in recounted else c for n, c in stored.items()}


def test_commands_end_a_ctrl_c_or_a_closed_pipe_without_a_traceback(capsys):
    """zoo.predict / zoo.export printed a KeyboardInterrupt traceback (9-38 frames) on Ctrl-C, and
    ``zoo.predict ... | head -1`` a BrokenPipeError traceback."""
    from zoo import cli

    def interrupted(argv):
        raise KeyboardInterrupt

    def piped(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert cli.run(interrupted) == 130
    assert capsys.readouterr().err == "error: interrupted (SIGINT): stopped; what was already written is whole\n"
    assert cli.run(piped) == 141 and capsys.readouterr().err == ""
    assert cli.run(lambda argv: 0) == 0


def test_a_full_stdout_is_one_error_line_and_a_files_error_stays_the_commands(capsys, tmp_path):
    """``python -m zoo > /dev/full`` printed an OSError traceback (at its print, or at the interpreter's exit
    for a short output); an error of the command's own file is not taken for one of stdout."""
    import sys

    from zoo import cli

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

    def prints(argv):
        print("a table")
        return 0

    def own_file(argv):
        open(tmp_path / "missing" / "f.txt")

    real = sys.stdout
    sys.stdout = Full()
    try:
        assert cli.run(prints) == 1
        assert sys.stdout.__class__ is Full   # given back
    finally:
        sys.stdout = real
    assert capsys.readouterr().err == "error: cannot write to standard output: No space left on device\n"
    with pytest.raises(FileNotFoundError):
        cli.run(own_file)


@pytest.mark.parametrize("error, status, said", [(BrokenPipeError(32, "Broken pipe"), 141, ""),
                                                 (OSError(28, "No space left on device"), 1,
                                                  "error: cannot write to standard output: No space left on device\n")])
def test_a_commands_own_oserror_handler_still_reports_stdout_as_run_does(capsys, error, status, said):
    """train.evaluate / train.inspect catch OSError themselves (their files) and called cli.fail: a closed
    pipe or a full stdout was "error: [Errno 32] Broken pipe" / "[Errno 28]", status 2."""
    import sys

    from zoo import cli

    class Failing:
        def write(self, text):
            raise error

        def flush(self):
            pass

    def command(argv):
        try:
            print("a row")
        except OSError as e:
            return cli.fail(f"{e} (details: somewhere)")   # as the commands do, or cli.fail(e)
        return 0

    real = sys.stdout
    sys.stdout = Failing()
    try:
        assert cli.run(command) == status
    finally:
        sys.stdout = real
    assert capsys.readouterr().err == said


def test_every_command_line_entry_runs_through_cli_run():
    """The one place that ends Ctrl-C and a closed pipe: each command's ``__main__`` block uses it."""
    from helpers import ROOT

    for path in ["zoo/predict.py", "zoo/export.py", "zoo/__main__.py", "zoo/convert/__main__.py",
                 "train/evaluate.py", "train/inspect.py", "train/transfer.py"]:
        assert "sys.exit(cli.run(main))" in (ROOT / path).read_text(), path
