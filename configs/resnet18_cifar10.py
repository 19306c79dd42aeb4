"""ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool: small_input=True) on CIFAR-10 at
32x32 (the stem's native size), the widely used recipe (kuangliu/pytorch-cifar, main.py): SGD momentum
0.9, lr 0.1, weight decay 5e-4 on every parameter (``optim.SGD(net.parameters(), ...)``), batch 128,
cosine over 200 epochs. About 93-95% top-1.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.cifar10(c)
    default.sgd(c, 0.1, weight_decay=5e-4)
    c.model = "resnet18"
    c.model_kwargs.small_input = True   # and so 32x32 images (its native size; data.image_size stays None)
    c.optimizer.decay_all = True
    c.batch_size = 128
    c.num_epochs = 200.0
    c.schedule.name = "cosine"
    return c
