"""Shared test set-up. pytest puts this folder on sys.path (rootdir conftest, prepend import mode), so
test modules in tests/zoo and tests/train import the shared helpers with ``from helpers import ...``
and the vendored fixtures with ``from fixtures.parity.recipe import ...``. Test files have unique
basenames (no __init__.py: a package named tests/zoo would shadow the real ``zoo``)."""
