"""ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool: small_input=True) on CIFAR-10,
the widely used recipe (kuangliu/pytorch-cifar): SGD momentum 0.9, lr 0.1, weight decay 5e-4,
batch 128, cosine over 200 epochs. About 93-95% top-1.

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

    c.model = "resnet18"
    c.model_kwargs.small_input = True
    c.batch_size = 128
    c.num_epochs = 200.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "cosine"
    return c
