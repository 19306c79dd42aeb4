"""Inception v3 on ImageNet at 299x299 (evaluation: resize 342, centre crop 299, the model's
``resize_size``), Szegedy et al. 2016 sec. 8: RMSProp (decay 0.9, epsilon 1.0), lr 0.045 decayed by
0.94 every two epochs (in steps, TF-slim's ``exponential_decay(staircase=True)``), gradient clipping at 2.0, batch 32 per replica, 100 epochs, label smoothing
0.1 (sec. 7). The paper ran 50 asynchronous replicas; a synchronous run of the same global batch is
``--config.batch_size=1600``. Weight decay 4e-5 and the auxiliary classifier's weight 0.4 follow
TF-slim's Inception v3 training (``inception_v3_arg_scope``, ``aux_loss`` weights=0.4), as does
PyTorch's fine-tuning recipe (``loss1 + 0.4 * loss2``). torchvision's weights (77.29% top-1) are
ported from the paper's release, with ``transform_input``. Evaluation uses "a running average of the
parameters computed over time" (sec. 8): an EMA of 0.9999 with TF's ``num_updates`` warmup, as
TF-slim's ``--moving_average_decay`` (the paper gives no decay).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    c.model = "inception_v3"
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = 0.045
    c.optimizer.rms_decay = 0.9
    c.optimizer.rms_eps = 1.0
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 4e-5
    c.optimizer.grad_clip_norm = 2.0
    c.batch_size = 32
    c.num_epochs = 100.0
    c.schedule.name = "step"
    c.schedule.decay_rate = 0.94
    c.schedule.step_epochs = 2.0
    c.label_smoothing = 0.1
    c.aux_loss_weight = 0.4
    c.optimizer.ema_decay = 0.9999
    c.optimizer.ema_warmup = True
    return c
