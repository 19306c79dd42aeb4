"""ShuffleNet V2 1.0x on ImageNet, Ma et al. 2018 (following ShuffleNet v1): SGD momentum 0.9, batch
1024, lr 0.5 decayed linearly to 0, weight decay 4e-5, 300k iterations (~240 epochs).
torchvision weights: 69.36% top-1. Not reproduced: the paper's "slightly less aggressive scale
augmentation" (the Inception crop keeps its 8-100% area range here).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.5, weight_decay=4e-5)
    c.model = "shufflenet_v2_x1_0"
    c.batch_size = 1024
    c.num_train_steps = 300_000
    c.schedule.name = "linear"
    return c
