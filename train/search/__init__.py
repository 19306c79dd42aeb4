"""Hyper-parameter search: grid / random / TPE on Optuna, with the trials that differ only in
numbers the step takes as inputs trained side by side in ONE compiled, vmapped step.

    import train
    result = train.search(config, ["optimizer.learning_rate=loguniform(1e-4, 1e-1)"], "runs/search",
                          method="random", trials=16)

    python -m train.search --config configs/lenet5_mnist5k.py --workdir runs/search --method random \\
        --trials 16 --space 'optimizer.learning_rate=loguniform(1e-4, 1e-1)'

Modules: ``space`` (the ``--space`` distributions), ``study`` (Optuna: storage, identity, handing out
trials, resume), ``group`` (trials side by side), ``runner`` (training one group), ``report``
(trials.csv, figures, ranking), ``session`` (the search loop), ``cli``.

``train.search`` is both this package and the function: the package is callable, so
``train.search(...)`` works however it was reached (``import train.search`` binds the package).
"""
import sys
import types


def search(*args, **kwargs):
    """``train.search.session.search``: run or resume a hyper-parameter search (see its docstring)."""
    from train.search import session  # noqa: PLC0415

    return session.search(*args, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
