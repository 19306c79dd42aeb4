"""Train a network: ``python -m train --config configs/lenet5_mnist5k.py --workdir runs/lenet5``
(or the console script ``zoo-train``). Any config field can be overridden:
``--config.optimizer.learning_rate=0.1``. Re-running the same command resumes from the workdir's
latest checkpoint. Multi-host: add ``--multihost`` on every process (``jax.distributed.initialize()``,
auto-detected on TPU pods / SLURM, or ``--coordinator_address``, ``--num_processes``, ``--process_id``).
"""
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<arch>_<dataset>.py; fields overridable as "
                                          "--config.field=value", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and TensorBoard events")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() before training")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "multi-host: host:port of process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-host: this process's index")
flags.mark_flags_as_required(["config", "workdir"])


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging as absl_logging  # noqa: PLC0415
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    logging.getLogger("train").setLevel(logging.INFO)
    import jax  # noqa: PLC0415

    if _MULTIHOST.value:
        if jax.default_backend() == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    from train import checkpoint, loop  # noqa: PLC0415

    try:
        r = loop.fit(_CONFIG.value, _WORKDIR.value)
    except (checkpoint.WorkdirMismatchError, loop.NonFiniteLossError, FileNotFoundError, ImportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        if r.interrupted:
            print(f"interrupted by {r.interrupted} at step {r.step}; checkpoint saved in {_WORKDIR.value}")
        else:
            ev = r.eval
            print(f"done: step {r.step} (epoch {r.epoch:.2f}) in {r.seconds:.1f}s | val top-1 {ev.get('top1', float('nan')):.4f}"
                  f" top-5 {ev.get('top5', float('nan')):.4f} | best top-1 {r.best_top1:.4f} at step {r.best_step}"
                  f" | checkpoints in {_WORKDIR.value}/checkpoints")
    return 0


def main():
    app.run(_main)


if __name__ == "__main__":
    main()
