"""SqueezeNet 1.0 and 1.1 (torchvision): ``squeezenet1_0``, ``squeezenet1_1``.

* Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer. "SqueezeNet: AlexNet-level accuracy with 50x
  fewer parameters and <0.5MB model size", arXiv:1602.07360 (2016). Table 1 (conv1, the fire
  modules' s1x1 / e1x1 / e3x3 channels, max-pools after conv1, fire4 and fire8, conv10 as the
  classifier), fig. 1 (the fire module: a 1x1 squeeze, then a 1x1 and a 3x3 expand side by side,
  concatenated), section 3.3 (ReLU after every squeeze and expand, dropout 0.5 after fire9, no fully
  connected layer: conv10 then global average pooling).
* SqueezeNet 1.1 (the authors' release, github.com/forresti/SqueezeNet): a 3x3/2 conv1 with 64
  filters and the max-pools after conv1, fire3 and fire5; same fire modules, 2.4x fewer MACs.

Layout as torchvision's ``features`` Sequential (index = ``features_i``; ReLU at 1, max-pools 3x3/2
with ``ceil_mode``)::

    1.0: conv1 7x7/2 96, pool, fire2-4, pool, fire5-8, pool, fire9
    1.1: conv1 3x3/2 64, pool, fire2-3, pool, fire4-5, pool, fire6-9
    classifier: dropout 0.5 -> classifier_1 (1x1 conv, num_classes) -> ReLU -> global average pool

A fire module (``features_i``) is ``squeeze`` (1x1) + ReLU, then the concatenating multi-branch
block ``zoo.branches`` of ``expand1x1`` and ``expand3x3`` (each conv + bias + ReLU). No BatchNorm:
convs carry biases (``norm`` must be None). Named features: ``stem`` (after the first
max-pool), the paper's fire module before each later max-pool (1.0: ``fire4``, ``fire8``; 1.1:
``fire3``, ``fire5``), ``pre_logits`` (fire9's map, what the classifier's conv sees: 13x13x512 at 224).

Init as torchvision: ``kaiming_uniform_`` (fan_in, ReLU gain) convs, ``classifier_1`` normal(0, 0.01),
biases 0.
"""
from __future__ import annotations

import flax.linen as nn

from zoo.branches import Concat, Conv, run
from zoo.checks import check_choice, check_rate
from zoo.layers import InputSpec, Ops, ZooModel, global_avg_pool, tap
from zoo.registry import Family, register

PAPER = ("Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, "
         "2016 (arXiv:1602.07360); torchvision SqueezeNet")

# Table 1 of the paper: fire module -> (s1x1, e1x1, e3x3) channels; the same modules in 1.0 and 1.1.
FIRE = {
    "fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
    "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256),
}
# conv1 (filters, kernel; features_0, ReLU features_1, max-pool features_2), then torchvision's ``features``
# from index 3 ("M": max-pool 3x3/2, ceil_mode).
LAYOUT = {
    "1_0": ((96, 7), ("fire2", "fire3", "fire4", "M", "fire5", "fire6", "fire7", "fire8", "M", "fire9")),
    "1_1": ((64, 3), ("fire2", "fire3", "M", "fire4", "fire5", "M", "fire6", "fire7", "fire8", "fire9")),
}
MIN_SIZE = {"1_0": 21, "1_1": 17}  # torchvision's minimum input sizes

kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")  # init.kaiming_uniform_(w)
normal_001 = nn.initializers.normal(stddev=0.01)


def conv_relu(ops: Ops, x, step: Conv):
    """SqueezeNet's unit: conv ``step.name`` with a bias, then ReLU."""
    return nn.relu(ops.conv(x, step.features, step.kernel, strides=step.strides, padding=step.padding,
                            use_bias=True, name=step.name))


def expand(e1x1: int, e3x3: int) -> Concat:
    """Fig. 1: the 1x1 and 3x3 expand convs side by side, concatenated."""
    return Concat(((Conv("expand1x1", e1x1, 1),), (Conv("expand3x3", e3x3, 3, padding=1),)))


class Fire(nn.Module):
    """Fire module: ``squeeze`` 1x1 + ReLU -> [``expand1x1`` + ReLU, ``expand3x3`` + ReLU] concatenated."""

    squeeze: int
    e1x1: int
    e3x3: int
    ops: Ops

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in) -> (B, H, W, e1x1 + e3x3)
        x = conv_relu(self.ops, x, Conv("squeeze", self.squeeze, 1))
        return run(self.ops, x, expand(self.e1x1, self.e3x3), unit=conv_relu)


class SqueezeNet(ZooModel):
    """SqueezeNet ``version`` '1_0' or '1_1', torchvision layout. x: (B, H, W, 3), H, W >= 21 (1.0) / 17 (1.1)."""

    version: str = "1_0"
    dropout: float = 0.5
    norm: str | None = None   # none in the paper or torchvision (no norm=... option: it was ignored)

    def check_options(self):
        check_choice("norm", self.norm, (None,))
        check_choice("version", self.version, tuple(LAYOUT))
        check_rate("dropout", self.dropout)

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=MIN_SIZE[self.version])

    def ops(self, train: bool, **overrides) -> Ops:
        return super().ops(train, conv_init=kaiming_uniform, **overrides)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        (filters, kernel), layout = LAYOUT[self.version]
        x = conv_relu(ops, x, Conv("features_0", filters, kernel, strides=2))
        x = tap(self, "stem", ops.max_pool(x, 3, 2, ceil_mode=True))        # (B, 54, 54, 96) at 224 (1.0)
        for i, item in enumerate(layout, start=3):
            if item == "M":  # the fire module before a max-pool ends a stage
                x = ops.max_pool(tap(self, layout[i - 4], x), 3, 2, ceil_mode=True)
            else:
                x = Fire(*FIRE[item], ops, name=f"features_{i}")(x)
        x = tap(self, "pre_logits", x)                                       # (B, 13, 13, 512) at 224
        x = ops.conv(ops.dropout(x, self.dropout), self.num_classes, 1, use_bias=True, kernel_init=normal_001,
                     bias_init=nn.initializers.zeros, name="classifier_1")
        return global_avg_pool(nn.relu(x))                                   # (B, num_classes)


# ----------------------------------------------------------------------------- variants
# Figures: torchvision's weight metadata.
SQUEEZENET = Family("squeezenet", paper=PAPER, head=("classifier_1",), input_size=224, weights_layout="torchvision")


@register(SQUEEZENET, params=1_248_424, macs=0.819e9)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    return SqueezeNet(version="1_0", **kwargs)


@register(SQUEEZENET, params=1_235_496, macs=0.349e9)
def squeezenet1_1(**kwargs) -> SqueezeNet:
    return SqueezeNet(version="1_1", **kwargs)
