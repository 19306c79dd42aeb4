"""The command lines share zoo.cli: ``--help`` exits 0 with the usage, the options and an epilog (the
commonest fields, where the full list is), a bad argument is one ``error:`` line with status 2; and
``python -m zoo`` prints its table from the stored counts, without tracing any model."""
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
