"""Build the quickstart run through ``train.setup.make`` and compile its train step once; print what
JAX's persistent compilation cache did as JSON.

usage: compile_cache.py COMPILE_CACHE  (the config's ``compile_cache`` field: 'auto', 'off' or a directory)

Every program is written, however fast it compiled (the project writes those over
``zoo.compiling.CACHE_MIN_COMPILE_SECS``, 0.1 s, tested in test_compiling.py): the initial state's small
programs (``_threefry_seed``, ...) crossed that line in one process and not the other under load, so a
second process "wrote" files the first had not, in CI once.
"""
import json
import sys

import jax
import numpy as np
from jax._src import monitoring

from configs import lenet5_mnist5k
from train import parallel, setup

events = []
monitoring.register_event_listener(lambda name, **_: events.append(name))

c = lenet5_mnist5k.get_config()
c.compile_cache = sys.argv[1]
plan = parallel.make_plan(c.parallelism, c.num_devices)
run = setup.make(c, plan=plan, model_kwargs=setup.model_kwargs(c, 10), input_shape=(28, 28, 1),
                 steps_per_epoch=100, total_steps=10_000)
if jax.config.jax_compilation_cache_dir is not None:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)   # see the docstring
state = parallel.replicate(run.fresh_state(), plan)
rng = np.random.default_rng(0)
batch = parallel.put_batch({"image": rng.standard_normal((64, 28, 28, 1), dtype=np.float32),
                            "label": rng.integers(0, 10, 64).astype(np.int32), "mask": np.ones(64, np.float32)}, plan)
events.clear()   # the train step only
state, metrics = run.compile_train()(state, batch)
print(json.dumps({"cache_dir": jax.config.jax_compilation_cache_dir, "loss": float(jax.device_get(metrics["loss"])),
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
