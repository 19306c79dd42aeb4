"""ShuffleNet V2 1.0x (torchvision) on CIFAR-10: SGD momentum 0.9, lr 0.1, weight decay 5e-4, batch 128,
cosine over 200 epochs (the common CIFAR recipe for these networks).
The torchvision network takes its 224x224 input: CIFAR's 32x32 images are resized to it (49x the
compute of 32x32; ``--config.data.image_size=32`` trains at CIFAR's size, a 1x1 last feature map).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.1, weight_decay=5e-4)
    c.model = "shufflenet_v2_x1_0"
    c.batch_size = 128
    c.num_epochs = 200.0
    c.schedule.name = "cosine"
    return c
