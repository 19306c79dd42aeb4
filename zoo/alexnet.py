"""AlexNet: torchvision's single-tower form and the 2012 original.

* Krizhevsky, Sutskever, Hinton. "ImageNet Classification with Deep Convolutional Neural Networks",
  NIPS 2012. Section 3.5 and Figure 2 (96-256-384-384-256 kernels, conv2/4/5 connected within one
  GPU only, i.e. 2 groups), section 3.3 (local response normalisation, k=2, n=5, alpha=1e-4,
  beta=0.75, after the ReLU of conv1 and conv2), section 3.4 (overlapping 3x3/2 max-pooling),
  section 4.2 (dropout 0.5 in fc6, fc7), section 5 (init).
* Krizhevsky. "One weird trick for parallelizing convolutional neural networks", arXiv:1404.5997,
  2014: the single-tower 64-192-384-256-256 form that torchvision's ``alexnet`` follows.

``alexnet`` follows torchvision exactly: ``features_0 ... features_12`` (``nn.Sequential`` indices),
an adaptive average pool to 6x6, ``classifier_0`` Dropout, ``classifier_1`` Linear, ...,
``classifier_6``; PyTorch default init. ``alexnet_v1`` follows the paper on its 227x227 input (the
size at which the paper's 11x11/4 conv1 gives 55x55), named as Caffe's ``bvlc_alexnet``: ``conv1``
... ``conv5``, ``fc6`` ... ``fc8``.

The flatten before the classifier is PyTorch's (channel-major, :func:`zoo.layers.flatten_nchw`), so
torchvision and Caffe fully connected weights convert by transposition.

Named features (both): ``relu1`` ... ``relu5`` (conv1 ... conv5 after their ReLU), ``relu6``, ``relu7``
(fc6, fc7 after their ReLU, 4096-d), ``pre_logits`` (the vector fed to the last Linear). They are
named after Caffe's ReLU layers, whose in-place outputs these are, because a feature cannot share a
name with a layer of the same module (Flax reserves one namespace for variables, sown values
included, and sub-modules) and ``alexnet_v1``'s layers are ``conv1`` ... ``fc8``.
"""
from __future__ import annotations

import flax.linen as nn

from zoo.checks import check_rate
from zoo.heads import pooled_dense
from zoo.layers import InputSpec, Ops, ZooModel, flatten_nchw, local_response_norm, tap, torch_default_kernel
from zoo.registry import Family, register

PAPER_V1 = ("Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks, "
            "NIPS 2012")
PAPER = "Krizhevsky, One weird trick for parallelizing convolutional neural networks, arXiv:1404.5997; torchvision"

# (out channels, kernel, stride, padding, groups, max-pool after) per conv layer.
TORCHVISION = ((64, 11, 4, 2, 1, True), (192, 5, 1, 2, 1, True), (384, 3, 1, 1, 1, False),
               (256, 3, 1, 1, 1, False), (256, 3, 1, 1, 1, True))
# Figure 2 / sec. 3.5 of the 2012 paper: conv2, conv4, conv5 see only the kernel maps of their own
# GPU (2 groups); conv3 and the fully connected layers see both.
PAPER_2012 = ((96, 11, 4, 0, 1, True), (256, 5, 1, 2, 2, True), (384, 3, 1, 1, 1, False),
              (384, 3, 1, 1, 2, False), (256, 3, 1, 1, 2, True))

# Sec. 3.3: b = a / (k + alpha * sum a^2)^beta over n = 5 adjacent maps. local_response_norm follows
# torch.nn.LocalResponseNorm, which divides alpha by n: pass n * alpha to get the paper's sum.
LRN_K, LRN_N, LRN_ALPHA, LRN_BETA = 2.0, 5, 1e-4, 0.75


class AlexNet(ZooModel):
    """torchvision's AlexNet. x: (B, H, W, 3), H, W >= 63 (the adaptive pool makes any size >= 63
    work: 63 -> conv1 15 -> pool 7 -> pool 3 -> pool 1).

    ``features``: conv 11x11/4 (64) -> ReLU -> max-pool 3/2 -> conv 5x5 (192) -> ReLU -> max-pool 3/2 ->
    conv 3x3 (384) -> ReLU -> conv 3x3 (256) -> ReLU -> conv 3x3 (256) -> ReLU -> max-pool 3/2;
    adaptive average pool 6x6; ``classifier``: Dropout -> Linear 9216-4096 -> ReLU -> Dropout ->
    Linear 4096-4096 -> ReLU -> Linear 4096-num_classes. 61,100,840 parameters, 0.714 GMACs at 224.

    ``norm`` (default None, as torchvision) inserts a norm layer after each conv (which then has no
    bias), taking the next ``features_N`` index as torchvision's ``vgg*_bn`` do.
    """

    norm: str | None = None
    dropout: float = 0.5

    def check_options(self):
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=63)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        i = 0  # index in torchvision's features nn.Sequential
        for n, (features, kernel, stride, pad, groups, pool) in enumerate(TORCHVISION, start=1):
            x = ops.conv(x, features, kernel, strides=stride, padding=pad, groups=groups, use_bias=self.norm is None,
                         kernel_init=torch_default_kernel, name=f"features_{i}")
            i += 1
            if self.norm is not None:
                x = ops.norm(x, name=f"features_{i}")
                i += 1
            x = tap(self, f"relu{n}", nn.relu(x))
            i += 1
            if pool:
                x = ops.max_pool(x, 3, 2)
                i += 1
        # avgpool (6x6) -> flatten -> classifier_0 (dropout) -> classifier_1: (B, H, W, 256) -> (B, 4096)
        x = tap(self, "relu6", nn.relu(pooled_dense(ops, x, 6, 4096, dropout=self.dropout, name="classifier_1")))
        x = ops.dropout(x, self.dropout)                                # classifier_3
        x = tap(self, "relu7", nn.relu(ops.dense(x, 4096, name="classifier_4")))
        x = tap(self, "pre_logits", x)                                  # (B, 4096)
        return ops.dense(x, self.num_classes, name="classifier_6")


class AlexNetV1(ZooModel):
    """AlexNet as in Krizhevsky et al. 2012, both GPU towers in one network. x: (B, 227, 227, 3).

    =====  ====================================================  ==========  ===========
    layer  what                                                  output      parameters
    =====  ====================================================  ==========  ===========
    conv1  11x11/4, 96, ReLU, LRN, max-pool 3/2                  55 -> 27    34,944
    conv2  5x5 pad 2, 256 in 2 groups, ReLU, LRN, max-pool 3/2   27 -> 13    307,456
    conv3  3x3 pad 1, 384, ReLU                                  13          885,120
    conv4  3x3 pad 1, 384 in 2 groups, ReLU                      13          663,936
    conv5  3x3 pad 1, 256 in 2 groups, ReLU, max-pool 3/2        13 -> 6     442,624
    fc6    9216 -> 4096, ReLU, dropout                           4096        37,752,832
    fc7    4096 -> 4096, ReLU, dropout                           4096        16,781,312
    fc8    4096 -> num_classes                                   1000        4,097,000
    =====  ====================================================  ==========  ===========

    60,965,224 parameters with 1000 classes. LRN: the paper's k=2, n=5, alpha=1e-4, beta=0.75 (its
    sum is not divided by n: ``local_response_norm(x, 5, alpha=5e-4, beta=0.75, k=2)``, since that
    function, like PyTorch and Caffe, divides alpha by n). No adaptive pooling: fc6 expects the
    6x6x256 map of a 227x227 input. Init as in sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4,
    conv5, fc6, fc7 and 0 in conv1, conv3, fc8.

    ``norm`` (default None) adds a norm layer ``bn{n}`` after each conv (before ReLU; the conv then
    has no bias); the LRN layers stay.
    """

    norm: str | None = None
    dropout: float = 0.5

    def check_options(self):
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=227, exact_size=227)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        weight = nn.initializers.normal(0.01)
        for n, (features, kernel, stride, pad, groups, pool) in enumerate(PAPER_2012, start=1):
            x = ops.conv(x, features, kernel, strides=stride, padding=pad, groups=groups, use_bias=self.norm is None,
                         kernel_init=weight, bias_init=_bias(n in (2, 4, 5)), name=f"conv{n}")
            x = ops.norm(x, name=f"bn{n}")
            x = tap(self, f"relu{n}", nn.relu(x))
            if n in (1, 2):
                x = local_response_norm(x, LRN_N, alpha=LRN_N * LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
            if pool:
                x = ops.max_pool(x, 3, 2)
        x = flatten_nchw(x)                                             # (B, 6 * 6 * 256)
        x = tap(self, "relu6", nn.relu(ops.dense(x, 4096, kernel_init=weight, bias_init=_bias(True), name="fc6")))
        x = ops.dropout(x, self.dropout)
        x = tap(self, "relu7", nn.relu(ops.dense(x, 4096, kernel_init=weight, bias_init=_bias(True), name="fc7")))
        x = tap(self, "pre_logits", ops.dropout(x, self.dropout))     # (B, 4096)
        return ops.dense(x, self.num_classes, kernel_init=weight, bias_init=_bias(False), name="fc8")


def _bias(one: bool):
    return nn.initializers.ones if one else nn.initializers.zeros


# ----------------------------------------------------------------------------- variants
ALEXNET = Family("alexnet", paper=PAPER, head=("classifier_6",), input_size=224, weights_layout="torchvision")


@register(ALEXNET, params=61_100_840, macs=0.714e9)
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(**kwargs)


# conv1..conv5 + fc6..fc8 = 34,944 + 307,456 + 885,120 + 663,936 + 442,624 + 37,752,832 + 16,781,312
# + 4,097,000 = 60,965,224 (reference.md). No torchvision counterpart.
@register(ALEXNET, params=60_965_224, head=("fc8",), input_size=227, paper=PAPER_V1, weights_layout=None)
def alexnet_v1(**kwargs) -> AlexNetV1:
    return AlexNetV1(**kwargs)
