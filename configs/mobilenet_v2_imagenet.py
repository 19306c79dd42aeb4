"""MobileNetV2 on ImageNet with torchvision's reference recipe (71.88% top-1): SGD momentum 0.9,
lr 0.045, weight decay 4e-5 on every parameter, batch 256, lr x0.98 every epoch (in steps, ``StepLR(1, 0.98)``), 300
epochs. The paper's own recipe (RMSProp, decay 0.9, momentum 0.9) is --config.optimizer.name=rmsprop.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.045, weight_decay=4e-5)
    c.optimizer.decay_all = True   # torchvision's train.py decays every parameter (no --norm-weight-decay)
    c.model = "mobilenet_v2"
    c.batch_size = 256
    c.num_epochs = 300.0
    c.schedule.name = "step"
    c.schedule.decay_rate = 0.98
    c.schedule.step_epochs = 1.0
    return c
