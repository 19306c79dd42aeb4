"""LeNet-5 (ReLU, max-pool) on full MNIST from TFDS (60,000 / 10,000): the quickstart recipe with the
full dataset, a larger batch and more epochs.

Prepare once (needs tensorflow and network): tfds build mnist --file_format=array_record
LeCun et al. 1998 report 0.95% test error for LeNet-5 (0.8% with distortions).
"""
from configs import lenet5_mnist5k


def get_config():
    c = lenet5_mnist5k.get_config()
    c.data.name = "mnist"
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_epochs = 20.0
    c.optimizer.learning_rate = 1e-3
    c.checkpoint.every_steps = 1000
    c.log_every_steps = 100
    return c
