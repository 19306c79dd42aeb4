"""VGG-11 with BatchNorm (torchvision definition) on CIFAR-10: SGD momentum 0.9, lr 0.05, weight
decay 5e-4, batch 128, cosine over 200 epochs (the common CIFAR VGG recipe).

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

    c.model = "vgg11_bn"
    c.batch_size = 128
    c.num_epochs = 200.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "cosine"
    return c
