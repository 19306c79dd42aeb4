"""Data parallelism: one per-device step, run through ``jax.pmap`` or ``jax.jit(jax.shard_map)``.

The step functions of ``train/step.py`` are written for ONE device holding its slice of the global
batch, with named-axis collectives over ``AXIS`` (``lax.psum``; BatchNorm's ``axis_name``). This
module wraps them:

* ``'shard_map'`` (default): ``jax.jit(jax.shard_map(f, mesh, in_specs=(P(), P(AXIS)), ...))`` over a
  1-D ``Mesh`` of the chosen devices. The train state is a replicated global ``jax.Array``, the batch
  a global array sharded along its first axis. ``check_vma=False`` gives the body pmap's per-device
  semantics (gradients of replicated parameters are NOT summed implicitly), so the same function,
  with its explicit ``psum``, is exact under both transforms.
* ``'pmap'``: ``jax.pmap(f, axis_name=AXIS)``; state and batch carry a leading device axis.

Search groups (``train.search``) add a leading TRIAL axis to the state: the step is ``jax.vmap``-ed
over it inside the same wrapper (``compile_step(..., trial_argnums=...)``). With
``Plan.trial_devices = t > 1`` (shard_map only) the mesh is 2-D, ``(TRIALS, AXIS)`` of shape
``(t, devices / t)``: the trials are split over ``t`` device rows, each trial data-parallel over its row.

Multi-host: every process calls the same functions; ``put_batch`` takes the process-local part of the
global batch (``jax.make_array_from_process_local_data`` for shard_map, the local devices' slices for
pmap). ``jax.distributed.initialize()`` must have run first (see ``train.loop``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zoo.compiling import gc_paused, step_compile_options

AXIS = "data"
TRIALS = "trials"  # the trial axis of a search group's 2-D mesh
PARALLELISMS = ("shard_map", "pmap")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which devices run the step, and how."""

    parallelism: str
    devices: tuple  # global devices taking part, in mesh order
    trial_devices: int = 1  # search groups: devices along the trial axis (2-D mesh); 1: a 1-D data mesh

    @property
    def mesh(self) -> Mesh:
        if self.trial_devices == 1:
            return Mesh(np.array(self.devices), (AXIS,))
        return Mesh(np.array(self.devices).reshape(self.trial_devices, -1), (TRIALS, AXIS))

    @property
    def data_devices(self) -> int:
        """Devices one example batch is split over (all of them unless the trial axis takes some)."""
        return self.num_devices // self.trial_devices

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def local_devices(self) -> tuple:
        return tuple(d for d in self.devices if d.process_index == jax.process_index())

    def local_batch_size(self, global_batch: int) -> int:
        """This process's part of the global batch (ValueError if it does not divide)."""
        check_batch(global_batch, self)
        return global_batch * len(self.local_devices) // self.num_devices


def make_plan(parallelism: str = "shard_map", num_devices: int = -1, trial_devices: int = 1) -> Plan:
    if parallelism not in PARALLELISMS:
        raise ValueError(f"parallelism={parallelism!r}: allowed values are {PARALLELISMS}")
    if trial_devices != 1:
        return _trial_plan(make_plan(parallelism, num_devices), trial_devices)
    devices = jax.devices()
    if num_devices == -1:
        chosen = devices
    elif jax.process_count() > 1:
        raise ValueError(f"num_devices={num_devices}: with several processes use -1 (all devices)")
    elif not 1 <= num_devices <= len(devices):
        raise ValueError(f"num_devices={num_devices}: allowed 1..{len(devices)} or -1 (all)")
    else:
        chosen = devices[:num_devices]
    return Plan(parallelism, tuple(chosen))


def _trial_plan(plan: Plan, trial_devices: int) -> Plan:
    n = plan.num_devices
    if not isinstance(trial_devices, int) or trial_devices < 1 or n % trial_devices:
        raise ValueError(f"trial_devices={trial_devices!r}: must divide the device count {n} "
                         f"(allowed: {[t for t in range(1, n + 1) if n % t == 0]})")
    if plan.parallelism != "shard_map":
        raise ValueError(f"trial_devices={trial_devices}: a trial axis across devices needs "
                         f"parallelism='shard_map' (got {plan.parallelism!r})")
    return dataclasses.replace(plan, trial_devices=trial_devices)


def check_batch(global_batch: int, plan: Plan, field: str = "global batch size") -> None:
    """ValueError naming ``field`` unless ``global_batch`` is a positive multiple of the data devices."""
    n = plan.data_devices
    if global_batch <= 0 or global_batch % n:
        raise ValueError(f"{field}={global_batch}: must be a positive multiple of the device count {n}")


# ----------------------------------------------------------------------------- placement

def _pmap_put(x: np.ndarray, plan: Plan):
    """Stacked ``(n_local, ...)`` host array -> pmap's input layout. JAX 0.10's pmap takes (and
    returns) a NamedSharding over the local devices, split on the leading axis. With several
    processes, pmap takes each process's host array as its local part."""
    if jax.process_count() > 1:
        return x
    return jax.device_put(x, NamedSharding(Mesh(np.array(plan.local_devices), (AXIS,)), P(AXIS)))


def replicate(tree, plan: Plan):
    """Host (or single-device) pytree -> a copy on every device of the plan."""
    if plan.parallelism == "pmap":
        n = len(plan.local_devices)

        def put(x):
            x = np.asarray(x)
            return _pmap_put(np.broadcast_to(x[None], (n, *x.shape)), plan)

        return jax.tree.map(put, tree)
    sharding = NamedSharding(plan.mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def unreplicate(tree, plan: Plan):
    """Replicated device pytree -> host numpy pytree (one copy)."""
    if plan.parallelism == "pmap":  # shards are (1, ...) slices of the leading device axis
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def abstract_replicated(tree, plan: Plan):
    """Abstract pytree (``jax.ShapeDtypeStruct`` leaves) -> the arguments :func:`replicate` would make
    of it, as abstract values (shard_map plans: for compiling a step before its first call)."""
    sharding = NamedSharding(plan.mesh, P())
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)


def abstract_batch(spec: dict, plan: Plan) -> dict:
    """A pipeline's ``element_spec`` (process-local ``{name: (shape, dtype)}``) -> the global batch
    :func:`put_batch` makes of such a batch, as abstract values (shard_map plans)."""
    sharding = NamedSharding(plan.mesh, P(AXIS))
    return {k: jax.ShapeDtypeStruct((shape[0] * jax.process_count(), *shape[1:]), dtype, sharding=sharding)
            for k, (shape, dtype) in spec.items()}


def put_batch(batch: dict, plan: Plan) -> dict:
    """Process-local host batch ``(b_local, ...)`` -> device arrays ready for the compiled step."""
    n_local = len(plan.local_devices)
    first = next(iter(batch.values()))
    if first.shape[0] % n_local:
        raise ValueError(f"local batch size {first.shape[0]} is not divisible by the local device count {n_local}")
    if plan.parallelism == "pmap":
        def put(x):
            return _pmap_put(np.asarray(x).reshape(n_local, -1, *x.shape[1:]), plan)
        return {k: put(v) for k, v in batch.items()}
    sharding = NamedSharding(plan.mesh, P(AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def fetch(tree, plan: Plan):
    """Per-example outputs (sharded along the batch) -> host numpy, process-local part, flat batch axis."""
    def local(x):
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        data = [np.asarray(s.data) for s in shards]
        return np.concatenate([d.reshape(-1, *d.shape[2:]) for d in data] if plan.parallelism == "pmap" else data)
    return jax.tree.map(local, tree)


# ----------------------------------------------------------------------------- compilation

def compile_step(fn: Callable, plan: Plan, *, batch_argnums=(1,), out_sharded: Any = None, donate_state: bool = True,
                 trial_argnums=()):
    """Wrap a per-device ``fn(state, batch, ...)`` for the plan.

    ``batch_argnums``: positional arguments sharded along the batch axis; others are replicated.
    ``out_sharded``: a pytree-prefix of bools for the outputs, True where the output is per-example
    (sharded along the batch); default: every output replicated.
    ``trial_argnums``: a search group's step (``fn`` vmapped over trials): these arguments and every
    output carry the leading trial axis, split over the mesh's TRIALS axis when
    ``plan.trial_devices > 1`` (placed by :func:`put_trials`, read back by :func:`get_trials`).
    """
    if plan.parallelism == "pmap":   # jax.pmap takes no compile options: XLA's defaults
        return jax.pmap(fn, axis_name=AXIS, devices=list(plan.local_devices) if jax.process_count() == 1 else None,
                        donate_argnums=(0,) if donate_state else ())
    trial_spec = P(TRIALS) if plan.trial_devices > 1 else P()

    @gc_paused()   # runs while jit traces it (the first call for each set of shapes)
    def wrapped(*args):
        in_specs = tuple(P(AXIS) if i in batch_argnums else trial_spec if i in trial_argnums else P()
                         for i in range(len(args)))
        out_specs = P() if out_sharded is None else jax.tree.map(lambda s: P(AXIS) if s else P(), out_sharded)
        if trial_argnums:
            out_specs = trial_spec
        return jax.shard_map(fn, mesh=plan.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(*args)

    return jax.jit(wrapped, donate_argnums=(0,) if donate_state else (),
                   compiler_options=step_compile_options(plan.devices[0].platform))


def put_trials(tree, plan: Plan):
    """Host pytree with a leading trial axis -> the devices of a search group's step: replicated
    (:func:`replicate`), or split along the mesh's TRIALS axis when ``plan.trial_devices > 1``."""
    if plan.trial_devices == 1:
        return replicate(tree, plan)
    sharding = NamedSharding(plan.mesh, P(TRIALS))

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def get_trials(tree, plan: Plan):
    """A search group's device outputs -> host numpy with the whole trial axis (:func:`put_trials`' inverse)."""
    if plan.trial_devices == 1:
        return unreplicate(tree, plan)

    def get(x):
        if x.is_fully_addressable:
            return np.asarray(x)
        from jax.experimental import multihost_utils  # noqa: PLC0415
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def preempted(step: int) -> bool:
    """Several processes: True at the step where all of them stop after one was sent SIGTERM (JAX's
    preemption notifier takes SIGTERM once ``jax.distributed`` is up; its sync point is one step all
    processes agree on, so they checkpoint the same step). Called by every process at every step.
    One process: False (its own handler, ``train.interrupts``, sees signals)."""
    if jax.process_count() == 1:
        return False
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return bool(multihost_utils.reached_preemption_sync_point(step))


def check_same_run(config, workdir) -> None:
    """Every process of a multi-process run was given the same config and ``--workdir``: each process
    compares its own with process 0's (broadcast), and all learn whether any differs (gathered), so
    they stop together, each with one ValueError line (the differing fields where it knows them).
    Once a process with another learning rate trained beside the others without a word (replicas
    diverged; process 0's checkpoint recorded its own config), and per-host workdirs hung at resume."""
    if jax.process_count() == 1:
        return
    import json  # noqa: PLC0415

    from jax.experimental import multihost_utils  # noqa: PLC0415

    from flax import traverse_util  # noqa: PLC0415

    fields = traverse_util.flatten_dict(config.to_dict(), sep=".")
    blob = json.dumps({"workdir": str(workdir), **fields}, sort_keys=True, default=str).encode()
    mine = json.loads(blob)   # as process 0's arrives: tuples as lists
    n = int(np.max(multihost_utils.process_allgather(np.array([len(blob)], np.int64))))
    first_blob = bytes(multihost_utils.broadcast_one_to_all(np.frombuffer(blob.ljust(n, b"\0"), np.uint8)))
    first = json.loads(first_blob.rstrip(b"\0"))
    differ = sorted(k for k in set(mine) | set(first) if mine.get(k) != first.get(k))
    others = np.asarray(multihost_utils.process_allgather(np.array([bool(differ)]))).reshape(-1)
    if differ:
        shown = ", ".join(f"{'--workdir' if k == 'workdir' else k} {mine.get(k)!r} (process 0: {first.get(k)!r})"
                          for k in differ[:5])
        raise ValueError(f"process {jax.process_index()} was given another run than process 0: {shown}; every process "
                         f"needs the same config and --workdir (a folder all of them share)")
    if others.any():
        raise ValueError(f"process(es) {', '.join(str(i) for i in np.flatnonzero(others))} were given another config or "
                         f"--workdir than process 0 (they name the fields); every process needs the same")
