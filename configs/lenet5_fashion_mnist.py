"""LeNet-5 (ReLU, max-pool; ``lenet5``) on Fashion-MNIST (60,000 / 10,000), read offline from the IDX
files of the Debian package dataset-fashion-mnist (the TFDS copy: ``--config.data.name=fashion_mnist``).

Reference: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST", Table 3: 89.7% for the best non-neural
baseline (SVC). Target here: >= 92% top-1.
Recipe (ours): ``lenet5`` with BatchNorm after each conv (``norm='batch'``), AdamW 3.7e-3, weight decay
5.4e-3 (decoupled), label smoothing 0.1, batch 128, 1 warmup epoch then cosine to 0 over 40 epochs,
random shifts of up to 2 pixels (``augment='mnist'``). Chosen on a held-out 6,000 of the training set
(train[:54000] -> train[54000:]), never on the test split:
1. BN + shifts beat shifts alone (90.5% / 90.2% at epoch 14 of 30) and CIFAR-style pad-crop-flip
   (88.1% at epoch 8 of 60).
2. Learning rate, weight decay and label smoothing: the best of 8 random trials of 40 epochs (92.33%;
   the others 91.52-92.30%), from
   ``python -m train.search --config configs/lenet5_fashion_mnist.py --workdir runs/search --trials 8
   --seed 1 --space 'optimizer.learning_rate=loguniform(1e-3, 1e-2)' --space
   'optimizer.weight_decay=loguniform(1e-4, 1e-1)' --space 'label_smoothing=choice(0, 0.1)'
   --config.num_epochs=40 --config.data.train_split='train[:54000]' --config.data.eval_split='train[54000:]'``.
The earlier recipe (AdamW 2e-3, weight decay 5e-4, no smoothing, 30 epochs) gave 91.74% on the test set.
``python benchmarks/reproduce.py --only lenet5_fashion_mnist``.
"""
from configs import default, lenet5_mnist5k


def get_config():
    c = default.idx(lenet5_mnist5k.get_config(), "fashion_mnist")
    c.model_kwargs.norm = "batch"
    c.data.augment = "mnist"
    c.batch_size = 128
    c.num_epochs = 40.0
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3.7e-3
    c.optimizer.weight_decay = 5.4e-3
    c.label_smoothing = 0.1
    return c
