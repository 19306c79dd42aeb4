"""DenseNet-121 on ImageNet, Huang et al. 2017: SGD Nesterov momentum 0.9, batch 256, lr 0.1 divided
by 10 at epochs 30 and 60, 90 epochs, weight decay 1e-4. torchvision weights: 74.43% top-1.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.1, weight_decay=1e-4, nesterov=True)
    c.model = "densenet121"
    c.batch_size = 256
    c.num_epochs = 90.0
    c.schedule.name = "multistep"
    c.schedule.milestones = (30.0, 60.0)
    c.schedule.decay_rate = 0.1
    return c
