"""MnasNet 1.0 on ImageNet with the recipe of Tan et al. 2019 (sec. 4): RMSProp decay 0.9, momentum 0.9,
weight decay 1e-5, dropout 0.2 before the classifier, batch 4096, learning rate warmed up from 0 to 0.256
over the first 5 epochs then decayed by 0.97 every 2.4 epochs, Inception preprocessing at 224x224; 350
epochs, label smoothing 0.1 and an EMA of the weights (0.9999, TF's ``num_updates`` warmup) for
evaluation as the authors' TPU code (mnasnet_main.py; its RMSProp epsilon 1e-3). BatchNorm momentum is
torchvision's definition's (0.9997 here, 1 - 3e-4; the paper's code 0.99: ``--config.model_kwargs.bn_momentum=0.99``).
torchvision's weights: 73.46% top-1.

On fewer devices keep the authors' rule of 0.016 per 256 images: ``--config.batch_size=1024
--config.optimizer.learning_rate=0.064``. Here the decay counts epochs from the end of warmup (the
authors' code counts from step 0: its rate is 0.97 ** (5 / 2.4) = 0.94 times this one after warmup).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.rmsprop(c, 0.256, weight_decay=1e-5)
    c.model = "mnasnet1_0"
    c.batch_size = 4096
    c.num_epochs = 350.0
    c.schedule.name = "step"
    c.schedule.warmup_epochs = 5.0
    c.schedule.step_epochs = 2.4
    c.schedule.decay_rate = 0.97
    c.label_smoothing = 0.1
    c.optimizer.ema_decay = 0.9999
    c.optimizer.ema_warmup = True
    return c
