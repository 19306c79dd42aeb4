"""Hyper-parameter search: ``python -m train.search --config FILE --workdir DIR --space 'path=dist' ...``
(grid, random or TPE on Optuna; trials that differ only in numbers the step takes as inputs train side
by side in one compiled step).

Re-running the same command resumes the search (finished trials are never re-run); several
processes started with the same ``--study`` / ``--storage`` (or ``--workdir``) split the trials.
Bad input (a config field that does not exist, a malformed distribution, a grid larger than
``--trials``, a workdir holding another search) is one ``error:`` line and exit status 2, with
nothing of an existing study changed. Ctrl-C / SIGTERM stop at the next step: the unfinished trials
go back to the study (exit status 130 / 143).
"""
from __future__ import annotations

import sys

EXAMPLES = """examples:
  python -m train.search --config configs/lenet5_mnist5k.py --workdir runs/search --method random --trials 16 \\
      --space 'optimizer.learning_rate=loguniform(1e-4, 1e-1)' --space 'optimizer.weight_decay=uniform(0, 1e-3)'
  python -m train.search --config configs/lenet5_mnist5k.py --workdir runs/grid --method grid \\
      --space 'optimizer.learning_rate=loggrid(1e-4, 1e-1, 4)' --space 'label_smoothing=choice(0, 0.1)' \\
      --config.num_epochs=5 --prune
  python -m train.search ... --study lenet --storage runs/shared.journal    # on every host: they split the trials

distributions: uniform(a, b), loguniform(a, b), int(a, b), choice(v1, v2, ...); grid(a, b, n), loggrid(a, b, n)
(a grid search takes choice / grid / loggrid). Any config field can be searched (configs/default.py lists them);
--config.FIELD=VALUE fixes the rest. Outputs in WORKDIR: study.db (Optuna), trials.csv, trials/<n>/metrics.jsonl,
best -> trials/<n> (python -m train.evaluate --workdir WORKDIR/best), figures/."""


def _parser():
    from train.search import study  # noqa: PLC0415  (optuna: already needed by the search)
    from zoo import cli  # noqa: PLC0415

    p = cli.parser("python -m train.search", __doc__, epilog=EXAMPLES)
    p.add_argument("--config", required=True, metavar="FILE[:ARG]",
                   help="config file, configs/<arch>_<dataset>.py; --config.FIELD=VALUE fixes what is not searched")
    p.add_argument("--workdir", required=True,
                   help="directory for the study, trials.csv, each trial's metrics, the best checkpoint and figures")
    p.add_argument("--space", action="append", default=[], metavar="PATH=DIST",
                   help="a searched config field and its distribution (repeat for each field)")
    p.add_argument("--method", default="random", choices=study.METHODS, help="how Optuna samples (default: random)")
    p.add_argument("--trials", type=int, default=None, help="trials in the study (a grid: its size by default)")
    p.add_argument("--parallel-trials", type=int, default=None, metavar="K",
                   help="at most K trials side by side in one compiled step (default: all that can share one)")
    p.add_argument("--prune", action="store_true", help="stop poor trials at evaluations (Optuna's --pruner)")
    p.add_argument("--pruner", default=None, choices=study.PRUNERS,
                   help="with --prune: successive halving or Hyperband (default: halving)")
    p.add_argument("--study", default="search", help="the Optuna study's name (default: search)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="an Optuna storage URL (sqlite:///..., postgresql://...) or a journal file path "
                        "(default: sqlite:///WORKDIR/study.db)")
    p.add_argument("--seed", type=int, default=None, help="the samplers' seed (default: config.seed)")
    p.add_argument("--memory-limit-gb", type=float, default=None,
                   help="memory a device may use for a group (default: what it offers)")
    p.add_argument("--verbose", action="store_true", help="debug messages, and the traceback of an unexpected error")
    return p


def main(argv: list[str] | None = None) -> int:
    from train import logs  # noqa: PLC0415  (light)

    with logs.forgiving_console():   # a console that cannot be written does not stop the search (train's)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    from train import host_memory, interrupts, overrides  # noqa: PLC0415  (light)

    if (status := host_memory.start_command_line(argv)) is not None:   # huge pages for XLA's buffers
        return status
    stop = interrupts.install()  # first, before jax is imported: see train/interrupts.py
    args, config, status = overrides.read_command_line(_parser(), argv, stop)
    if status is None and args.pruner is not None and not args.prune:
        from zoo import cli  # noqa: PLC0415

        status = cli.fail(f"--pruner={args.pruner} needs --prune (without it no trial is pruned)")
    if status is not None:
        return status
    _, fields = overrides.split(list(sys.argv[1:] if argv is None else argv))   # read once already: valid
    return interrupts.finish(_search(config, args, fixed=[name for name, _ in fields]))


def _search(config, args, fixed=()) -> int:
    import optuna  # noqa: PLC0415

    from train import interrupts, logs  # noqa: PLC0415
    from train.search import group, session, study  # noqa: PLC0415
    from zoo import cli  # noqa: PLC0415

    logs.for_command(None, verbose=args.verbose)  # the console; each trial's metrics go to its own directory
    optuna.logging.set_verbosity(optuna.logging.DEBUG if args.verbose else optuna.logging.WARNING)
    if args.memory_limit_gb is not None and not args.memory_limit_gb > 0:
        return cli.fail(f"--memory-limit-gb {args.memory_limit_gb:g}: must be > 0 (GiB a device may use for a group)")
    limit = None if args.memory_limit_gb is None else int(args.memory_limit_gb * 2 ** 30)
    try:
        r = session.search(config, args.space, args.workdir, method=args.method, trials=args.trials,
                           parallel_trials=args.parallel_trials, prune=(args.pruner or "halving") if args.prune else None,
                           study=args.study, storage=args.storage, seed=args.seed, memory_limit=limit, fixed=fixed)
    except interrupts.Interrupted as e:
        print(e, file=sys.stderr, flush=True)
        return e.exit_code
    except (ValueError, study.StudyMismatchError, group.GroupTooLargeError, ImportError, OSError) as e:
        return cli.fail(e)
    except Exception as e:  # noqa: BLE001  (anything else: one line; --verbose shows where it came from)
        if args.verbose:
            raise
        return cli.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (--verbose: the traceback)",
                        status=1)
    return interrupts.exit_status(r.interrupted) if r.interrupted else 0
