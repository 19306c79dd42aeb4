"""VGG-16 (torchvision) on ImageNet with torchvision's reference recipe: SGD momentum 0.9, lr 0.01,
weight decay 1e-4 on every parameter, batch 256, lr x0.1 every 30 epochs, 90 epochs. torchvision weights: 71.59% top-1.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.01, weight_decay=1e-4)
    c.optimizer.decay_all = True   # torchvision's train.py decays every parameter (no --norm-weight-decay)
    c.model = "vgg16"
    c.batch_size = 256
    c.num_epochs = 90.0
    c.schedule.name = "step"
    c.schedule.step_epochs = 30.0
    c.schedule.decay_rate = 0.1
    return c
