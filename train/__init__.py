"""train: the shared machinery (one setup path, train/eval step, optimizers, data, checkpoints,
evaluation, reporting, the loop, CLIs).

    import train
    result = train.fit(config, "runs/lenet5")          # train (resumes if the workdir has checkpoints)
    report = train.evaluate("runs/lenet5")             # loss, top-1/5, per-class, confusion matrix
    model, variables = train.restore("runs/lenet5")    # model.apply(variables, x, train=False)
    model, variables, meta, step = train.load("runs/lenet5")   # the same, with the checkpoint's meta
    result = train.search(config, ["optimizer.learning_rate=loguniform(1e-4, 1e-1)"], "runs/search", trials=16)

Attributes are imported lazily so that data worker processes, which import this package, stay light.
"""
_LAZY = {"fit": ("train.loop", "fit"), "evaluate": ("train.evaluation", "evaluate"),
         "restore": ("train.evaluation", "restore"), "restore_meta": ("train.evaluation", "restore_meta"),
         "load": ("train.evaluation", "load"), "search": ("train.search", "search")}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
