"""ResNet-20 on CIFAR-10, He et al. 2016 sec. 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k, here epochs 82, 123, 164: the last
partial batch is dropped, 390 iterations per epoch, so the decays come at 31,980 and 47,970 and the
run ends at 63,960; 4-pixel padding, random 32x32 crops, horizontal flips. Paper: 91.25% top-1.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.1, weight_decay=1e-4)
    c.model = "resnet20"
    c.batch_size = 128
    c.num_epochs = 164.0
    c.schedule.name = "multistep"
    c.schedule.milestones = (82.0, 123.0)
    c.schedule.decay_rate = 0.1
    return c
