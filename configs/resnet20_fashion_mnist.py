"""ResNet-20 (He et al. 2016, the CIFAR network; option-A shortcuts) on Fashion-MNIST, 28x28x1 in,
read offline from the IDX files of the Debian package dataset-fashion-mnist.

Reference: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST", Table 3: 89.7% for the best non-neural
baseline (SVC). Target here: >= 93.5% top-1.
Recipe (ours, He et al.'s CIFAR recipe shortened): SGD momentum 0.9, lr 0.1, weight decay 5e-4,
batch 128, 1 warmup epoch then cosine to 0 over 15 epochs, CIFAR-style augmentation (4-pixel zero
padding, random 28x28 crop, horizontal flip); one input channel at 28x28 (no resize).
``python benchmarks/reproduce.py --only resnet20_fashion_mnist``.
"""
from configs import default


def get_config():
    c = default.idx(default.get_config(), "fashion_mnist")
    default.sgd(c, 0.1, weight_decay=5e-4)
    c.model = "resnet20"
    c.model_kwargs.in_channels = 1
    c.data.image_size = 28
    c.data.augment = "cifar"
    c.batch_size = 128
    c.num_epochs = 15.0
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 1.0
    return c
