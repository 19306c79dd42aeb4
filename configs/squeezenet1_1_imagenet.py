"""SqueezeNet 1.1 on ImageNet with the authors' release solver (github.com/forresti/SqueezeNet,
SqueezeNet_v1.0/solver.prototxt, used for v1.1 too): SGD momentum 0.9, lr 0.08, batch 32 x
iter_size 32 = 1024, Caffe's "poly" decay with power 0.5 to 0 over 85,000 iterations (about 68
epochs), weight decay 2e-4. torchvision's weights: 58.18% top-1. Momentum here is PyTorch's (the
learning rate multiplies the momentum buffer; Caffe accumulates lr x gradient): over the poly decay's
last steps, where the lr falls fastest, the updates differ from Caffe's by up to 60%. Not the
release's: its training crops are fixed-size random 227 crops without flips and Caffe decays biases too;
here the Inception crop with flips at 224 and kernels only (the project's rule).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.08, weight_decay=2e-4)
    c.model = "squeezenet1_1"
    c.batch_size = 1024
    c.num_train_steps = 85_000
    c.schedule.name = "poly"
    c.schedule.power = 0.5
    return c
