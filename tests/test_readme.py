"""README stays true: its test command is what CI runs, its model table is the registry's with the
counts of zoo/model_counts.json (that they are the models' own: tests/zoo/test_registry.py), and every
python and bash snippet runs as written, in a user's folder, in order (long trainings shortened)."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zoo
from helpers import ROOT, child_env
from zoo.__main__ import HEADER, stored_counts, table_row

README = (ROOT / "README.md").read_text()


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmd = next(line.split("#")[0].strip() for line in ci.splitlines() if line.strip().startswith("python -m pytest"))
    block = README.split("## Tests", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    assert block == ci_cmd


def test_readme_model_table_has_every_model():
    header = "\n".join(HEADER)
    assert header in README
    table = README.split(header, 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M) == zoo.list_models()


@pytest.mark.parametrize("name", zoo.list_models())
def test_readme_model_row_is_the_stored_counts(name):
    """The row of zoo/model_counts.json's counts; that they are the model's own is checked where the
    model is traced anyway (tests/zoo/test_registry.py: test_model_info_is_complete)."""
    stored = stored_counts()
    assert name in stored, "run: python -m zoo --update-counts"
    assert table_row(name, *stored[name]) in README.splitlines()


# ------------------------------------------------------------------------------------------------ the snippets
BLOCKS = [(lang, textwrap.dedent(code))
          for lang, code in re.findall(r"^ *```(python|bash)\n(.*?)^ *```", README, flags=re.M | re.S)]
NOT_RUN = {  # the start of a block that the tests do not run -> why
    "git clone": "installs from the network",
    "python -m pytest": "is this test suite",
    "python -m train --config configs/resnet20_cifar10.py": "needs CIFAR-10 prepared by TFDS, and hours",
    "pip install tensorflow-cpu": "downloads a dataset and needs tensorflow",
    "sudo apt-get install dataset-fashion-mnist": "installs packages from the network (.ci/run does it)",
    'import zoo\nmodel, variables = zoo.load_pretrained("resnet50")': "downloads torchvision's weights",
    "python -m zoo.predict --model resnet50": "downloads torchvision's weights",
    "python -m train.evaluate --pretrained": "needs ImageNet and torchvision's weights",
    "python -m zoo.export --model resnet50": "downloads torchvision's weights",
    "import onnxruntime as ort": "reads the files of the export snippet, which is not run",
    "python -m train --config configs/resnet18_finetune_folder.py": "needs your image folder and torchvision's weights",
    "python benchmarks/bench.py": "takes minutes: measurements, never tests",
    "python benchmarks/search.py": "takes half an hour: measurements, never tests",
}
SHORTER = " --config.num_epochs=2"   # appended to each `python -m train --config ...` line: 2 epochs instead of 10


def _skipped(code: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if code.startswith(start)), None)


def test_every_snippet_is_run_or_says_why_not():
    assert len(BLOCKS) >= 10
    assert {start for start in NOT_RUN if any(code.startswith(start) for _, code in BLOCKS)} == set(NOT_RUN)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A user's folder: the repository's configs/ and nothing else; runs/ is made by the snippets."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "configs").symlink_to(ROOT / "configs")
    return folder


def _prepare(code: str, folder) -> None:
    """What a snippet expects from a step the tests cannot run: a torchvision resnet18 weight file."""
    if "resnet18.safetensors" in code and not (folder / "resnet18.safetensors").exists():
        from helpers import random_variables
        from zoo import convert

        model = zoo.create("resnet18")
        convert.save_torchvision("resnet18", random_variables(model, (224, 224, 3)), folder / "resnet18.safetensors",
                                 model=model)


@pytest.mark.integration
def test_readme_snippets_run_as_written_in_order(user_folder):
    """One test, not one per snippet: later snippets use what earlier ones made (the quickstart's
    checkpoints), and pytest-xdist's worksteal scheduling may run parametrised cases on different
    workers, each with its own module-scoped folder, in any order."""
    for index, (lang, code) in enumerate(BLOCKS):
        if _skipped(code):
            continue
        _prepare(code, user_folder)
        if lang == "python":
            cmd = [sys.executable, "-c", code]
        else:
            code = "\n".join(line + SHORTER if line.startswith("python -m train --config") else line
                             for line in code.replace("\\\n", " ").splitlines())
            cmd = ["bash", "-e", "-c", code]
        env = child_env(1, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # `python`: ours
        p = subprocess.run(cmd, cwd=user_folder, env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"README snippet {index} ({lang}):\n{code}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
