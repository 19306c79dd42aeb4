"""Shared test set-up. pytest puts this folder on sys.path (rootdir conftest, prepend import mode), so
test modules in tests/zoo and tests/train import the shared helpers with ``from helpers import ...``
and the vendored fixtures with ``from fixtures.parity.recipe import ...``. Test files have unique
basenames (no __init__.py: a package named tests/zoo would shadow the real ``zoo``).

Shared fixtures live here; helpers (plain functions) in helpers.py.

The persistent compilation cache: the tests and the processes they start share one per test session
(``session_compile_cache``: ``ZOO_COMPILE_CACHE`` set to a fresh folder under pytest's base temporary
directory, one for all xdist workers), so a program one test compiled is read back by the later tests
of the same run (the CLI tests' LeNet-5 steps; the integration tests 8% faster), never one from another run or the
user's cache directory, into which tests never write. Before the session starts (collection) it is
off; the tests of the cache set their own."""
import logging
import os
import socket

import pytest

os.environ["ZOO_COMPILE_CACHE"] = "off"


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory):
    """``(workdir, FitResult)``: LeNet-5 trained by ``train.fit`` for 4 epochs of mnist5k (the
    quickstart config, ``helpers.quick()``), once per session. Tests only read it; copy it
    (``shutil.copytree``) before changing anything in it."""
    import train
    from helpers import quick

    workdir = tmp_path_factory.mktemp("lenet5")
    return workdir, train.fit(quick(), workdir)


@pytest.fixture(scope="session")
def trained_lenet5(trained_lenet):
    """The same trained LeNet-5 with its eval-split images, for the analyses: ``{workdir, model,
    variables, pp (preprocessing), raw (48 uint8 images), labels, x (normalised)}``."""
    import train
    from train import data

    workdir = trained_lenet[0]
    loaded = train.load(workdir)
    pp = loaded.meta["preprocessing"]
    test = data.open_source("mnist5k", "test", image_shape=(28, 28, 1))  # the eval split, uint8
    raw = test.images[:48]
    return dict(workdir=workdir, model=loaded.model, variables=loaded.variables, pp=pp, raw=raw,
                labels=test.labels[:48], x=data.preprocess_eval(raw, pp))


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(tmp_path_factory):
    """One persistent compilation cache folder per test session: pytest-xdist gives each worker the
    base temporary directory ``<the run's>/gwN``, so workers share its parent; without xdist, the
    base itself. JAX writes an entry in place, without a lock or a rename (``jax/_src/lru_cache.py``):
    a process that reads an entry while another writes it gets a truncated file, which JAX reports
    as a warning ("Error reading persistent compilation cache entry") and compiles instead."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "compile-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_COMPILE_CACHE", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def offline_weight_cache(tmp_path_factory):
    """Every test runs with its own weight cache ($ZOO_CACHE) and torchvision's download location
    replaced by an empty local directory ($ZOO_WEIGHTS_MIRROR): a published weight file is never
    fetched from the internet, whatever a test asks for (it fails with DownloadError instead)."""
    root = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE", str(root / "cache"))
        mp.setenv("ZOO_WEIGHTS_MIRROR", str(root / "no-mirror"))
        yield root


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection in the test fails (AssertionError): offline code paths stay offline."""
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def compile_log(caplog):
    """``(thread name, message)`` of JAX's "Compiling jit(NAME) ..." lines (one per lowering that is
    compiled or read from the persistent cache) logged while the test runs."""
    import jax  # noqa: PLC0415  (collection stays free of it: session_compile_cache)

    before = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    with caplog.at_level(logging.WARNING, logger="jax"):
        yield lambda: [(r.threadName, r.getMessage()) for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    jax.config.update("jax_log_compiles", before)
