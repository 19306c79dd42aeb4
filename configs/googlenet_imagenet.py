"""GoogLeNet on ImageNet, Szegedy et al. 2015 sec. 6: SGD momentum 0.9, the learning rate decreased
by 4% every 8 epochs, the two auxiliary classifiers' losses added with weight 0.3 (sec. 5). The paper
gives no learning rate, batch or length; those come from the BVLC Caffe replication it thanks
(models/bvlc_googlenet/solver.prototxt: lr 0.01, batch 32, x0.96 every 320,000 iterations = 8
epochs, 10M iterations = 250 epochs, weight decay 2e-4). torchvision's weights (69.78% top-1) are
ported from the paper's release, with ``transform_input``. Momentum here is PyTorch's (the learning
rate multiplies the momentum buffer on each step; Caffe accumulates lr x gradient), which differs
from Caffe's only briefly after each x0.96 step. Not reproduced: the main classifier's dropout is
torchvision's definition's 0.2 (the paper's 40%: ``--config.model_kwargs.dropout=0.4``), the
paper's Polyak averaging for inference (``optimizer.ema_decay`` is the nearest) and its photometric
distortions.
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.01, weight_decay=2e-4)
    c.model = "googlenet"
    c.batch_size = 32
    c.num_epochs = 250.0
    c.schedule.name = "step"
    c.schedule.step_epochs = 8.0
    c.schedule.decay_rate = 0.96
    c.aux_loss_weight = 0.3
    return c
