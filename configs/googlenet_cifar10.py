"""GoogLeNet (torchvision definition, BatchNorm, both auxiliary classifiers at weight 0.3) on CIFAR-10,
images resized to its 224x224 input: SGD momentum 0.9, lr 0.1, weight decay 5e-4, batch 128, cosine
over 200 epochs (the common CIFAR recipe for these networks).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.1, weight_decay=5e-4)
    c.model = "googlenet"
    c.batch_size = 128
    c.num_epochs = 200.0
    c.schedule.name = "cosine"
    c.aux_loss_weight = 0.3
    return c
