"""DenseNet-121 (torchvision, DenseNet-BC) on CIFAR-10 with Huang et al. 2017's CIFAR schedule: SGD
Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 divided by 10 at 50% and 75% of 300
epochs. The network is torchvision's DenseNet-121 (the ImageNet network, 224x224 input: CIFAR's
images are resized to it), not the paper's 3-block CIFAR DenseNet-BC.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.1, weight_decay=1e-4, nesterov=True)
    c.model = "densenet121"
    c.batch_size = 64
    c.num_epochs = 300.0
    c.schedule.name = "multistep"
    c.schedule.milestones = (150.0, 225.0)
    c.schedule.decay_rate = 0.1
    return c
