"""DenseNet-121 (torchvision, DenseNet-BC) on CIFAR-10 with Huang et al. 2017's CIFAR schedule: SGD
Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 divided by 10 at 50% and 75% of 300
epochs.

Prepare once: tfds build cifar10 --file_format=array_record
"""
from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "cifar10"
    c.data.augment = "cifar"      # pad 4, random 32x32 crop, horizontal flip
    c.eval_batch_size = 500
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100

    c.model = "densenet121"
    c.batch_size = 64
    c.num_epochs = 300.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "multistep"
    c.schedule.milestones = (150.0, 225.0)
    c.schedule.decay_rate = 0.1
    return c
