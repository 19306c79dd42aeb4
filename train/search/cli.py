"""``python -m train.search``: a hyper-parameter search from the command line.

    python -m train.search --config configs/lenet5_mnist5k.py --workdir runs/search --method random --trials 16 \\
        --space 'optimizer.learning_rate=loguniform(1e-4, 1e-1)' --space 'optimizer.weight_decay=uniform(0, 1e-3)' \\
        [--config.num_epochs=5] [--parallel-trials 16] [--prune] [--study NAME --storage URL]

Re-running the same command resumes the search (finished trials are never re-run); several
processes started with the same ``--study`` / ``--storage`` (or ``--workdir``) split the trials.
Bad input (a config field that does not exist, a malformed distribution, a grid larger than
``--trials``, a workdir holding another search) is one ``error:`` line and exit status 2, with
nothing of an existing study changed.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<arch>_<dataset>.py; fields overridable as "
                                          "--config.field=value (they fix what is not searched)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for the study, trials.csv, each trial's metrics, "
                               "the best checkpoint and figures")
_SPACE = flags.DEFINE_multi_string("space", [], "path=dist, repeated: uniform(a, b), loguniform(a, b), int(a, b), "
                                   "choice(v1, v2, ...), grid(a, b, n), loggrid(a, b, n)")
_METHOD = flags.DEFINE_enum("method", "random", ["grid", "random", "tpe"], "how Optuna samples the trials")
_TRIALS = flags.DEFINE_integer("trials", None, "trials in the study (a grid: its size by default)")
_PARALLEL = flags.DEFINE_integer("parallel-trials", None, "at most this many trials side by side in one compiled "
                                 "step (default: all that can share one); also how many a process takes at a time")
_PRUNE = flags.DEFINE_bool("prune", False, "stop poor trials at epoch boundaries (Optuna's pruner, --pruner)")
_PRUNER = flags.DEFINE_enum("pruner", "halving", ["halving", "hyperband"], "with --prune: successive halving or "
                            "Hyperband")
_STUDY = flags.DEFINE_string("study", "search", "the Optuna study's name")
_STORAGE = flags.DEFINE_string("storage", None, "an Optuna storage URL (sqlite:///..., postgresql://...) or a journal "
                               "file path (default: sqlite:///WORKDIR/study.db)")
_SEED = flags.DEFINE_integer("seed", None, "the samplers' seed (default: config.seed)")
_MEMORY = flags.DEFINE_float("memory-limit-gb", None, "memory a device may use for a group (default: what it offers)")
flags.mark_flags_as_required(["config", "workdir"])


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from train import reporting  # noqa: PLC0415

    reporting.cli_logging()
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from train.search import group, session, study  # noqa: PLC0415

    limit = None if _MEMORY.value is None else int(_MEMORY.value * 2 ** 30)
    try:
        session.search(_CONFIG.value, _SPACE.value, _WORKDIR.value, method=_METHOD.value, trials=_TRIALS.value,
                           parallel_trials=_PARALLEL.value, prune=_PRUNER.value if _PRUNE.value else None,
                           study=_STUDY.value, storage=_STORAGE.value, seed=_SEED.value, memory_limit=limit)
    except (ValueError, study.StudyMismatchError, group.GroupTooLargeError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main():
    app.run(_main)
