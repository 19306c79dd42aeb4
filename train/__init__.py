"""train: the shared machinery (train/eval step, optimizers, data, checkpoints, loop, CLI)."""
