"""Shared test set-up. pytest puts this folder on sys.path (rootdir conftest, prepend import mode), so
test modules in tests/zoo and tests/train import the shared helpers with ``from helpers import ...``
and the vendored fixtures with ``from fixtures.parity.recipe import ...``. Test files have unique
basenames (no __init__.py: a package named tests/zoo would shadow the real ``zoo``).

Shared fixtures live here; helpers (plain functions) in helpers.py."""
import pytest


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory):
    """``(workdir, FitResult)``: LeNet-5 trained by ``train.fit`` for 4 epochs of mnist5k (the
    quickstart config, ``helpers.quick()``), once per session. Tests only read it; copy it
    (``shutil.copytree``) before changing anything in it."""
    import train
    from helpers import quick

    workdir = tmp_path_factory.mktemp("lenet5")
    return workdir, train.fit(quick(), workdir)
