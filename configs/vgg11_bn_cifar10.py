"""VGG-11 with BatchNorm (torchvision definition) on CIFAR-10: SGD momentum 0.9, lr 0.05, weight
decay 5e-4, batch 128, cosine over 200 epochs (the common CIFAR VGG recipe).
The torchvision network takes its 224x224 input: CIFAR's 32x32 images are resized to it (49x the
compute of 32x32; ``--config.data.image_size=32`` trains at CIFAR's size, a 1x1 last feature map).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.05, weight_decay=5e-4)
    c.model = "vgg11_bn"
    c.batch_size = 128
    c.num_epochs = 200.0
    c.schedule.name = "cosine"
    return c
