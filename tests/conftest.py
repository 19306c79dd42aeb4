"""Shared test set-up. pytest puts this folder on sys.path (rootdir conftest, prepend import mode), so
test modules in tests/zoo and tests/train import the shared helpers with ``from helpers import ...``
and the vendored fixtures with ``from fixtures.parity.recipe import ...``. Test files have unique
basenames (no __init__.py: a package named tests/zoo would shadow the real ``zoo``)."""

import pytest


@pytest.fixture(scope="session")
def trained_lenet5(tmp_path_factory):
    """A LeNet-5 trained briefly (3 epochs) on mnist5k, once per session, with its eval-split images:
    ``{workdir, model, variables, pp (preprocessing), raw (48 uint8 images), labels, x (normalised)}``."""
    import train
    from configs import lenet5_mnist5k
    from train import data

    workdir = tmp_path_factory.mktemp("lenet5_inspect")
    c = lenet5_mnist5k.get_config()
    c.num_epochs = 3.0
    train.fit(c, workdir)
    model, variables = train.restore(workdir)
    pp = train.restore_meta(workdir)["preprocessing"]
    test = data.open_source("mnist5k", "test", image_shape=(28, 28, 1))  # the eval split, uint8
    raw = test.images[:48]
    return dict(workdir=workdir, model=model, variables=variables, pp=pp, raw=raw, labels=test.labels[:48],
                x=data.preprocess_eval(raw, pp))
