"""Train a network: ``python -m train --config configs/lenet5_mnist5k.py --workdir runs/lenet5``
(or the console script ``zoo-train``). Re-running the same command resumes from the workdir's latest
checkpoint; Ctrl-C or SIGTERM saves a checkpoint and stops (a second Ctrl-C stops at once).

Multi-host: add ``--multihost`` on every process (``jax.distributed.initialize()``, auto-detected on
TPU pods / SLURM, or ``--coordinator_address``, ``--num_processes``, ``--process_id``).
"""
from __future__ import annotations

import contextlib
import sys

COMMON_FIELDS = ("model", "data.name", "batch_size", "num_epochs", "num_train_steps", "optimizer.name",
                 "optimizer.learning_rate", "schedule.name", "precision", "checkpoint.every_steps", "log_every_steps",
                 "transfer.init_from")
EXAMPLES = """examples:
  python -m train --config configs/lenet5_mnist5k.py --workdir runs/lenet5
  python -m train --config configs/resnet20_cifar10.py --workdir runs/r20 \\
      --config.optimizer.learning_rate=0.05 --config.batch_size=256 --config.precision=bfloat16"""


def _parser():
    from configs import default  # noqa: PLC0415
    from train import overrides  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    epilog = (f"{EXAMPLES}\n\nany config field can be overridden with --config.FIELD=VALUE; the commonest (defaults "
              f"of configs/default.py):\n{overrides.described(list(COMMON_FIELDS), default.get_config())}\n\n"
              f"every field, its default and what it means: configs/default.py. The run writes WORKDIR/train.log "
              f"(all messages, with details of any error).")
    p = cli.parser("python -m train", __doc__, epilog=epilog)
    p.add_argument("--config", required=True, metavar="FILE[:ARG]",
                   help="config file, configs/<arch>_<dataset>.py (get_config(ARG) with :ARG)")
    p.add_argument("--workdir", required=True, help="directory for checkpoints, metrics, TensorBoard events, train.log")
    p.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize() before training")
    p.add_argument("--coordinator_address", default=None, help="multi-host: host:port of process 0")
    p.add_argument("--num_processes", type=int, default=None, help="multi-host: number of processes")
    p.add_argument("--process_id", type=int, default=None, help="multi-host: this process's index")
    p.add_argument("--verbose", action="store_true", help="debug messages on the console too")
    return p


def main(argv: list[str] | None = None) -> int:
    from train import logs  # noqa: PLC0415  (light)

    # a console that cannot be written (closed by the launcher, >&-; a full disk behind a redirection; a
    # pipe whose reader exited): the run goes on, train.log has it all (a traceback, a bare errno line or
    # nothing at all before)
    with logs.forgiving_console():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    from train import host_memory, interrupts, overrides  # noqa: PLC0415  (light)

    if (status := host_memory.start_command_line(argv)) is not None:   # huge pages for XLA's buffers
        return status
    stop = interrupts.install()  # first, before jax is imported: see train/interrupts.py

    def multihost(args):  # every process must stop at the same step: SIGTERM goes through JAX's preemption
        if args.multihost:  # sync (train.parallel.preempted), SIGINT acts as it would without us
            interrupts.uninstall()

    args, config, status = overrides.read_command_line(_parser(), argv, stop, on_args=multihost)
    alone = [] if status is not None or args.multihost else [
        f"--{n}" for n in ("coordinator_address", "num_processes", "process_id") if getattr(args, n) is not None]
    if alone:
        from zoo import cli  # noqa: PLC0415

        status = cli.fail(f"{', '.join(alone)} need(s) --multihost (without it this process trains alone)")
    if status is None and args.multihost:
        status = _check_processes(args)
    if status is not None:
        return status
    code = interrupts.finish(_train(config, args))
    # status 1, a failure during the run (a peer gone): leave at once. Status 2, a start every process
    # refused: they shut down together (the coordinator leaving at once made the others print gRPC's
    # "Socket closed" after their error line).
    if args.multihost and code == 1:
        _leave_at_once(code)
    return code


def _leave_at_once(code: int) -> None:
    """A multi-process run that failed (its error line said): exit now. At exit, JAX's
    ``jax.distributed`` shutdown waits for every process at a barrier; after another process died it
    waited ~90 s and then aborted with a native stack."""
    import logging  # noqa: PLC0415
    import os  # noqa: PLC0415

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _check_processes(args) -> int | None:
    """--num_processes >= 1 and --process_id in 0..num_processes-1, before any process waits for the others."""
    from zoo import cli  # noqa: PLC0415

    n, i = args.num_processes, args.process_id
    if n is not None and n < 1:
        return cli.fail(f"--num_processes={n}: must be >= 1")
    if i is not None and (i < 0 or (n is not None and i >= n)):
        return cli.fail(f"--process_id={i}: allowed 0..{n - 1} (--num_processes {n})" if n is not None
                        else f"--process_id={i}: must be >= 0")
    return None


def _join(args) -> None:
    """``jax.distributed.initialize`` (said first: it waits for every process, up to ``INIT_TIMEOUT_S``).
    CPU collectives through gloo (the option is read by the CPU backend only; set before any backend
    starts, which ``initialize`` requires)."""
    import jax  # noqa: PLC0415

    from train import logs  # noqa: PLC0415

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = args.coordinator_address or "the address the cluster gives"
    logs.log.info("waiting for the %s processes at %s (process %s; up to %d s)", args.num_processes or "other",
                  where, "auto" if args.process_id is None else args.process_id, INIT_TIMEOUT_S)
    jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                               process_id=args.process_id, initialization_timeout=INIT_TIMEOUT_S)


INIT_TIMEOUT_S = 300


def _train(config, args) -> int:
    from train import interrupts, lock, logs  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    try:
        with lock.WorkdirLock(args.workdir) if not args.multihost else contextlib.nullcontext():
            log_file = logs.for_command(args.workdir, verbose=args.verbose)
            logs.log.info("training %s in %s%s", args.config, args.workdir,
                          f" (every message also goes to {log_file})" if log_file else "")
            try:
                return _fit(config, args, log_file)
            finally:
                logs.close_log_file()
    except interrupts.Interrupted as e:
        print(e, file=sys.stderr, flush=True)
        return e.exit_code
    except (lock.WorkdirBusyError, lock.WorkdirUnwritableError) as e:
        return cli.fail(e)


def _fit(config, args, log_file) -> int:
    import jax  # noqa: PLC0415

    from train import checkpoint, interrupts, lock, logs, loop, parallel, reporting  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    def details() -> str:   # where the traceback went (not a log file that a full disk stopped)
        return f" (details: {log_file})" if logs.log_file_written(log_file) else ""

    try:
        if args.multihost:
            _join(args)
            parallel.check_same_run(config, args.workdir)
        r = loop.fit(config, args.workdir)
    except interrupts.Interrupted:
        raise
    except (checkpoint.WorkdirMismatchError, lock.WorkdirBusyError, loop.NonFiniteLossError, ImportError, ValueError,
            OSError) as e:
        logs.details("the run stopped", e)
        return cli.fail(f"{e}{details()}" if isinstance(e, OSError) else e)
    except Exception as e:  # noqa: BLE001  (anything else: one line here, the traceback in the log file)
        logs.details("the run failed", e)
        peers = " (with several processes: did another process of the run stop?)" if args.multihost else ""
        return cli.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{peers}{details()}", status=1)
    if jax.process_index() == 0:
        if r.interrupted:
            logs.say(f"interrupted by {r.interrupted} at step {r.step}; checkpoint saved in {args.workdir}")
        else:
            ev, nan = r.eval, float("nan")
            evaluated = (f"{ev.get('split', 'val')} ({ev.get('count', 0):,} images{', EMA' if ev.get('ema') else ''})"
                         f" top-1 {ev.get('top1', nan):.4f} "
                         + reporting.top5_text(ev.get('top5', nan), len(ev.get("per_class_top1") or []) or None, "top-5"))
            logs.say(f"done: step {r.step} (epoch {r.epoch:.2f}) in {r.seconds:.1f}s | {evaluated} | best top-1 "
                     f"{r.best_top1:.4f} at step {r.best_step} | checkpoints in {args.workdir}/checkpoints")
    return interrupts.exit_status(r.interrupted) if r.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
