"""Train the quickstart config briefly on all simulated devices; print the result as JSON.

usage: fit_devices.py WORKDIR PARALLELISM  (XLA_FLAGS sets the device count)
"""
import json
import sys

import jax

import train
from configs import lenet5_mnist5k

c = lenet5_mnist5k.get_config()
c.num_train_steps = 30
c.batch_size = 64
c.eval_batch_size = 200
c.checkpoint.every_steps = 10
c.schedule.warmup_epochs = 0.0
c.parallelism = sys.argv[2]
r = train.fit(c, sys.argv[1])
print(json.dumps({"devices": jax.device_count(), "top1": r.eval["top1"], "loss": r.eval["loss"], "step": r.step}))
