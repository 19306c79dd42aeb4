"""VGG (torchvision), with and without batch normalisation.

* Simonyan, Zisserman. "Very Deep Convolutional Networks for Large-Scale Image Recognition",
  ICLR 2015, arXiv:1409.1556. Table 1: configurations A (11 weight layers), B (13), D (16), E (19):
  3x3 convs with padding 1, 2x2/2 max-pooling ("M"), then FC-4096, FC-4096, FC-1000 with dropout 0.5.
* The ``_bn`` variants are torchvision's: a BatchNorm after every conv (the conv keeps its bias).

torchvision layout: ``features_N`` = index N of torchvision's ``features`` ``nn.Sequential`` (conv,
[BatchNorm,] ReLU per entry of the configuration, MaxPool per "M"), an adaptive average pool to 7x7,
``classifier_0`` Linear 25088-4096, ``_1`` ReLU, ``_2`` Dropout, ``classifier_3`` Linear 4096-4096,
``_4`` ReLU, ``_5`` Dropout, ``classifier_6`` Linear 4096-num_classes. The flatten is PyTorch's
(channel-major, :func:`zoo.layers.flatten_nchw`). torchvision init: convs kaiming_normal (fan_out,
ReLU gain) with zero bias, Linear N(0, 0.01) with zero bias, BatchNorm 1 / 0.

Named features: ``block{b}_conv{c}`` (post-activation, Keras names: ``block3_conv1`` is the first conv
of the third block), ``pre_logits`` (the 4096-d vector fed to ``classifier_6``).
"""
from __future__ import annotations

import flax.linen as nn

from zoo.checks import check_choice, check_rate
from zoo.heads import pooled_dense
from zoo.layers import InputSpec, Ops, ZooModel, kaiming_normal_fan_out, tap
from zoo.registry import Family, register

PAPER = ("Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015 "
         "(arXiv:1409.1556); torchvision")

# Table 1 of the paper (torchvision's cfgs): conv output channels, "M" = 2x2/2 max-pool.
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                                   # VGG11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                          # VGG13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],           # VGG16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],  # 19
}

linear_init = nn.initializers.normal(0.01)  # nn.init.normal_(m.weight, 0, 0.01), bias 0


class VGG(ZooModel):
    """VGG-11/13/16/19 (``cfg`` A/B/D/E). x: (B, H, W, 3), H, W >= 32 (five 2x2 pools; the adaptive
    7x7 average pool takes any size from there). ``norm=None``: ``vgg16``; ``norm='batch'``:
    ``vgg16_bn``; any other norm takes the BatchNorm's place and index."""

    cfg: str = "D"
    norm: str | None = None
    dropout: float = 0.5

    def check_options(self):
        check_choice("cfg", self.cfg, CFGS)
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        i, block, conv = 0, 1, 1  # i: index in torchvision's features nn.Sequential
        for v in CFGS[self.cfg]:
            if v == "M":
                x = ops.max_pool(x, 2, 2)
                i, block, conv = i + 1, block + 1, 1
                continue
            x = ops.conv(x, v, 3, padding=1, use_bias=True, kernel_init=kaiming_normal_fan_out, name=f"features_{i}")
            i += 1
            if self.norm is not None:
                x = ops.norm(x, name=f"features_{i}")
                i += 1
            x = tap(self, f"block{block}_conv{conv}", nn.relu(x))
            i, conv = i + 1, conv + 1
        # avgpool (7x7) -> flatten -> classifier_0: (B, H, W, 512) -> (B, 4096)
        x = nn.relu(pooled_dense(ops, x, 7, 4096, kernel_init=linear_init, bias_init=nn.initializers.zeros,
                                 name="classifier_0"))
        x = ops.dropout(x, self.dropout)                                # classifier_2
        x = nn.relu(ops.dense(x, 4096, kernel_init=linear_init, bias_init=nn.initializers.zeros, name="classifier_3"))
        x = tap(self, "pre_logits", ops.dropout(x, self.dropout))      # classifier_5; (B, 4096)
        return ops.dense(x, self.num_classes, kernel_init=linear_init, bias_init=nn.initializers.zeros,
                         name="classifier_6")


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata.
VGG_FAMILY = Family("vgg", paper=PAPER, head=("classifier_6",), input_size=224, weights_layout="torchvision")


@register(VGG_FAMILY, params=132_863_336, macs=7.609e9)
def vgg11(**kwargs) -> VGG:
    return VGG(cfg="A", **kwargs)


@register(VGG_FAMILY, params=132_868_840, macs=7.609e9, paper=PAPER + " (batch-norm variant)")
def vgg11_bn(**kwargs) -> VGG:
    return VGG(cfg="A", norm="batch", **kwargs)


@register(VGG_FAMILY, params=133_047_848, macs=11.308e9)
def vgg13(**kwargs) -> VGG:
    return VGG(cfg="B", **kwargs)


@register(VGG_FAMILY, params=133_053_736, macs=11.308e9, paper=PAPER + " (batch-norm variant)")
def vgg13_bn(**kwargs) -> VGG:
    return VGG(cfg="B", norm="batch", **kwargs)


@register(VGG_FAMILY, params=138_357_544, macs=15.47e9)
def vgg16(**kwargs) -> VGG:
    return VGG(cfg="D", **kwargs)


@register(VGG_FAMILY, params=138_365_992, macs=15.47e9, paper=PAPER + " (batch-norm variant)")
def vgg16_bn(**kwargs) -> VGG:
    return VGG(cfg="D", norm="batch", **kwargs)


@register(VGG_FAMILY, params=143_667_240, macs=19.632e9)
def vgg19(**kwargs) -> VGG:
    return VGG(cfg="E", **kwargs)


@register(VGG_FAMILY, params=143_678_248, macs=19.632e9, paper=PAPER + " (batch-norm variant)")
def vgg19_bn(**kwargs) -> VGG:
    return VGG(cfg="E", norm="batch", **kwargs)
