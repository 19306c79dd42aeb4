"""LeNet-5 (ReLU, max-pool) on full MNIST from TFDS (60,000 / 10,000).

Prepare once (needs tensorflow and network): tfds build mnist --file_format=array_record
LeCun et al. 1998 report 0.95% test error for LeNet-5 (0.8% with distortions).
"""
from configs import default


def get_config():
    c = default.get_config()
    c.model = "lenet5"
    c.data.name = "mnist"
    c.data.augment = "none"
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_epochs = 20.0
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 1.0
    c.checkpoint.every_steps = 1000
    c.log_every_steps = 100
    return c
