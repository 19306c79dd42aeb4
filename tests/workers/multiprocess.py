"""One of two processes (jax.distributed on 127.0.0.1, gloo CPU collectives, one device each)
training the common 3 steps, each feeding its half of every global batch.

usage: multiprocess.py PROCESS_ID PORT OUT PARALLELISM
"""
import json
import sys

import jax

pid, port, out, parallelism = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                           initialization_timeout=120)
import numpy as np  # noqa: E402

from common import GLOBAL_BATCH, train_three_steps  # noqa: E402
from train import parallel  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 2 and jax.local_device_count() == 1
half = GLOBAL_BATCH // 2
flat, loss = train_three_steps(parallel.make_plan(parallelism), slice(pid * half, (pid + 1) * half))
np.savez(f"{out}/process{pid}.npz", **flat)
print(json.dumps({"loss": loss, "process": pid}))
jax.distributed.shutdown()
