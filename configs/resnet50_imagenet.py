"""ResNet-50 (v1.5) on ImageNet with the Flax ImageNet example's recipe: SGD Nesterov momentum 0.9,
lr 0.1 x batch / 256 (batch 1024: 0.4), 5 warmup epochs then cosine, weight decay 1e-4 on kernels,
100 epochs: 76.3-76.7% top-1 (8xV100: 13.2 h fp32, 4.3 h mixed precision; add
--config.precision=bfloat16 on TPU/GPU).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.4, weight_decay=1e-4, nesterov=True)
    c.model = "resnet50"
    c.batch_size = 1024
    c.num_epochs = 100.0
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    return c
