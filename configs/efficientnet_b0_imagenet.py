"""EfficientNet-B0 on ImageNet with the recipe of Tan & Le 2019 (sec. 5.2): RMSProp decay 0.9, momentum
0.9, weight decay 1e-5, learning rate 0.256 decayed by 0.97 every 2.4 epochs, SiLU, stochastic depth 0.2
(survival 0.8) and dropout 0.2 (the model's defaults); as the authors' TPU code: batch 4096 (0.016 per
256 images), 5 warmup epochs, 350 epochs, label smoothing 0.1, an exponential moving average of the
weights and BatchNorm statistics (decay 0.9999 with ``num_updates``: min(0.9999, (1 + t) / (10 + t))
after t updates; evaluation uses it), RMSProp epsilon 1e-3, and bicubic resizing of training crops and evaluation
(their ``preprocessing.py``; here PIL's antialiased bicubic, TF1's ``resize_bicubic`` is not antialiased).
torchvision's weights (ported from the authors'): 77.69% top-1, evaluated bicubic.

Not reproduced: AutoAugment (the pipeline has the Inception crop and flip only), and the BatchNorm
momentum 0.99 of the paper (torchvision's B0 keeps PyTorch's 0.1, i.e. Flax 0.9; set
``--config.model_kwargs.bn_momentum=0.99`` for the paper's). The decay counts epochs from the end of
warmup (the authors' code counts from step 0). Weight decay reaches the kernels only, the default rule
here (the authors' code also decays the biases: 1% of B0's parameters, the SE and classifier biases).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.rmsprop(c, 0.256, weight_decay=1e-5)
    c.model = "efficientnet_b0"
    c.batch_size = 4096
    c.num_epochs = 350.0
    c.label_smoothing = 0.1
    c.data.interpolation = "bicubic"
    c.optimizer.ema_decay = 0.9999
    c.optimizer.ema_warmup = True
    c.schedule.name = "step"
    c.schedule.warmup_epochs = 5.0
    c.schedule.step_epochs = 2.4
    c.schedule.decay_rate = 0.97
    return c
