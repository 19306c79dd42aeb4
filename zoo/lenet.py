"""LeNet-5: the modern textbook form and the 1998 original.

* LeCun, Bottou, Bengio, Haffner. "Gradient-based learning applied to document recognition",
  Proceedings of the IEEE 86(11), 1998. Section II.B (layers C1 ... F6), Table I (the C3
  connection table), Appendix A (the squashing function ``f(a) = A tanh(S a)``, A = 1.7159, S = 2/3).

``lenet5``: the form of today's courses and framework tutorials: ReLU, max-pooling, full C3
connections, a 28x28 MNIST image padded by 2 in the first conv. 6-16-120-84-10: 61,706 parameters.
Names ``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3`` (PyTorch tutorial's LeNet).

``lenet5_classic``: the paper's network on a 32x32 input, layers named as in the paper (``C1`` ...
``F6``, ``output``), each followed by the scaled tanh; see :class:`LeNet5Classic` for the count.

Named features (both): the paper's layer names in lower case, for the output of each layer after
its activation: ``c1`` (28x28x6), ``s2`` (14x14x6), ``c3`` (10x10x16), ``s4`` (5x5x16), ``c5`` (120, flattened;
``lenet5``: fc1), ``f6`` (84) = ``pre_logits``. (Lower case because a feature cannot share a name
with a layer of the same module: Flax reserves one namespace for variables, sown values included,
and sub-modules.)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_choice
from zoo.layers import InputSpec, Ops, ZooModel, avg_pool, flatten_nchw, tap, torch_default_kernel
from zoo.registry import Family, register

PAPER = ("LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition, "
         "Proc. IEEE 86(11), 1998")

# ----------------------------------------------------------------------------- the paper's figures

# Table I of the paper: which S2 feature maps (rows) feed each C3 feature map (columns 0..15).
TABLE_I = (
    # 0123456789012345   <- C3 map
    "X   XXX  XXXX XX",  # S2 map 0
    "XX   XXX  XXXX X",  # S2 map 1
    "XXX   XXX  X XXX",  # S2 map 2
    " XXX  XXXX  X XX",  # S2 map 3
    "  XXX  XXXX XX X",  # S2 map 4
    "   XXX  XXXX XXX",  # S2 map 5
)


def connection_table(table: Sequence[str] = TABLE_I) -> tuple[tuple[int, ...], ...]:
    """Input maps of each output map: Table I -> ``((0, 1, 2), (1, 2, 3), ..., (0, 1, 2, 3, 4, 5))``.
    C3 maps 0-5 take 3 contiguous S2 maps, 6-11 take 4 contiguous, 12-14 take 4 non-contiguous,
    15 takes all 6."""
    return tuple(tuple(i for i, row in enumerate(table) if row[j] == "X") for j in range(len(table[0])))


# Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3 (f(1) = 1, f(-1) = -1).
SQUASH_A, SQUASH_S = 1.7159, 2.0 / 3.0


def lecun_tanh(x):
    """The paper's squashing function ``1.7159 * tanh(2a / 3)``."""
    return SQUASH_A * jnp.tanh(SQUASH_S * x)


# The paper initialises from U(-2.4/F, 2.4/F) (F = fan-in). We use the uniform distribution of
# variance 1/F that LeCun et al., "Efficient BackProp" (1998), recommend for this same squashing
# function: it keeps unit variance through the stack, where 2.4/F shrinks the signal by about
# sqrt(1.92/F) per layer (F = 400 at C5). Biases start at 0.
classic_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


# ----------------------------------------------------------------------------- modern LeNet-5

class LeNet5(ZooModel):
    """conv 5x5 (6, pad 2) -> ReLU -> max-pool 2 -> conv 5x5 (16) -> ReLU -> max-pool 2 -> fc 120 -> ReLU
    -> fc 84 -> ReLU -> fc num_classes. x: (B, 28, 28, 1). PyTorch default init.

    Parameters (10 classes): 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
    ``norm`` (default None) puts a norm layer (``bn1``, ``bn2``) after each conv, which then has no bias.
    """

    num_classes: int = 10
    in_channels: int = 1
    norm: str | None = None

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=28, exact_size=28)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        x = ops.conv_norm_act(x, 6, 5, padding=2, kernel_init=torch_default_kernel, conv_name="conv1",
                              norm_name="bn1")
        x = tap(self, "c1", x)                              # (B, 28, 28, 6)
        x = tap(self, "s2", ops.max_pool(x, 2, 2))          # (B, 14, 14, 6)
        x = ops.conv_norm_act(x, 16, 5, padding=0, kernel_init=torch_default_kernel, conv_name="conv2",
                              norm_name="bn2")
        x = tap(self, "c3", x)                              # (B, 10, 10, 16)
        x = tap(self, "s4", ops.max_pool(x, 2, 2))          # (B, 5, 5, 16)
        x = flatten_nchw(x)                                 # (B, 400), PyTorch order
        x = tap(self, "c5", nn.relu(ops.dense(x, 120, name="fc1")))  # (B, 120)
        x = tap(self, "f6", nn.relu(ops.dense(x, 84, name="fc2")))
        x = tap(self, "pre_logits", x)                      # (B, 84)
        return ops.dense(x, self.num_classes, name="fc3")


# ----------------------------------------------------------------------------- the 1998 LeNet-5

class Subsampling(nn.Module):
    """The paper's S2 / S4: each unit adds the 4 inputs of its 2x2 window (stride 2), multiplies by
    a trainable coefficient and adds a trainable bias, one pair per feature map (2C parameters).
    The squashing function is applied by the caller."""

    ops: Ops

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C) -> (B, H/2, W/2, C)
        c = x.shape[-1]
        coefficient = self.param("coefficient", nn.initializers.constant(0.25), (c,), self.ops.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.ops.param_dtype)
        window_sum = 4.0 * avg_pool(x, 2, 2)
        return window_sum * coefficient.astype(self.ops.dtype) + bias.astype(self.ops.dtype)


class ConnectionTableConv(nn.Module):
    """A convolution in which output map ``j`` sees only the input maps ``table[j]`` (the paper's C3).

    Only the connected kernels are parameters: ``kernel`` is ``(k, k, connections)``, one k x k
    kernel per X of the table read output map by output map (C3 map 0 from S2 maps 0, 1, 2; map 1
    from 1, 2, 3; ...), and ``bias`` one per output map. For Table I: 60 connections, 60 * 25 + 16 =
    1,516 parameters. The forward pass scatters them into the full ``(k, k, C_in, C_out)`` kernel
    (zeros where the table has no X) and runs one dense convolution: the zeros get no gradient, and
    this is far faster on CPU than grouped convolutions per fan-in (XLA's CPU kernel gradient of a
    grouped convolution is two orders of magnitude slower than a dense one here). Init: uniform with
    variance 1/fan-in of each output map (:data:`classic_kernel_init`), biases 0.
    """

    table: tuple[tuple[int, ...], ...]
    kernel_size: int
    ops: Ops

    def macs(self, out_shape) -> int:
        """Per image: each output position of map j costs k*k*len(table[j]) MACs (150,000 for C3)."""
        return out_shape[1] * out_shape[2] * self.kernel_size ** 2 * sum(map(len, self.table))

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C_in) -> (B, H - k + 1, W - k + 1, len(table))
        k, c_in, c_out = self.kernel_size, x.shape[-1], len(self.table)
        if c_in != 1 + max(max(m) for m in self.table):
            raise ValueError(f"ConnectionTableConv: input has {c_in} maps, the table connects "
                             f"{1 + max(max(m) for m in self.table)}")
        out_idx = np.array([j for j, maps in enumerate(self.table) for _ in maps])
        in_idx = np.array([i for maps in self.table for i in maps])
        fan_in = np.array([k * k * len(self.table[j]) for j in out_idx], np.float32)

        def kernel_init(key, shape, dtype=jnp.float32):  # U(-a, a), a = sqrt(3 / fan_in): variance 1/fan_in
            return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * jnp.sqrt(3.0 / fan_in).astype(dtype)

        ops = self.ops
        kernel = self.param("kernel", kernel_init, (k, k, len(in_idx)), ops.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c_out,), ops.param_dtype)
        full = jnp.zeros((k, k, c_in, c_out), ops.dtype).at[:, :, in_idx, out_idx].set(kernel.astype(ops.dtype))
        y = ops.conv_general_dilated(x.astype(ops.dtype), full, (1, 1), ((0, 0), (0, 0)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(ops.dtype)


class LeNet5Classic(ZooModel):
    """LeNet-5 as in LeCun et al. 1998, sec. II.B. x: (B, 32, 32, 1) (a 28x28 digit centred in a 32x32
    field). Every layer up to F6 computes a weighted sum plus bias followed by ``f(a) = 1.7159 tanh(2a/3)``.

    ======  ====================================================  ==========  ===========
    layer   what                                                  output      parameters
    ======  ====================================================  ==========  ===========
    C1      conv 5x5, 6 maps                                      28x28x6     156
    S2      2x2 sum * coefficient + bias, per map                 14x14x6     12
    C3      conv 5x5, 16 maps, Table I connections                10x10x16    1,516
    S4      2x2 sum * coefficient + bias, per map                 5x5x16      32
    C5      conv 5x5, 120 maps (full connections)                 1x1x120     48,120
    F6      fully connected, 84 units                             84          10,164
    output  fully connected, ``num_classes`` units, no squash     10          850
    ======  ====================================================  ==========  ===========

    Up to F6: 60,000 trainable parameters, the paper's figure.

    Output layer (a documented departure): the paper's output is 10 Euclidean RBF units,
    ``y_i = sum_j (x_j - w_ij)^2`` with fixed +-1 prototypes (stylised 7x12 bitmaps), trained with its
    MAP criterion. Under softmax cross-entropy, ``-y_i`` as logits is a fixed linear layer
    ``2 x . w_i`` (``||x||^2`` and ``||w_i||^2 = 84`` are the same for every class and cancel): logits
    of scale up to 2 * 84 * 1.7159 = 288, no temperature or bias to learn, and nothing for
    ``num_classes`` to resize (no parameters: head replacement and ``freeze='backbone'`` would have
    no head to act on). We use a plain trainable ``Dense(84 -> num_classes)`` named ``output``: the
    usual affine softmax classifier, which trains well with cross-entropy, like every other family's
    head. Total with 10 classes: 60,000 + 84 * 10 + 10 = 60,850.

    Init: ``classic_kernel_init`` (variance 1/fan-in, see there); subsampling coefficients 0.25 (the
    window mean) and biases 0. No normalisation layers (``norm`` must be None).
    """

    num_classes: int = 10
    in_channels: int = 1
    norm: str | None = None

    def check_options(self):
        check_choice("norm", self.norm, (None,))

    def input_spec(self):
        return InputSpec(self.in_channels, min_size=32, exact_size=32)

    def forward(self, x, ops: Ops):  # x: (B, H, W, C), checked
        conv = dict(padding=0, use_bias=True, kernel_init=classic_kernel_init)
        x = tap(self, "c1", lecun_tanh(ops.conv(x, 6, 5, name="C1", **conv)))          # (B, 28, 28, 6)
        x = tap(self, "s2", lecun_tanh(Subsampling(ops, name="S2")(x)))                # (B, 14, 14, 6)
        x = ConnectionTableConv(connection_table(TABLE_I), 5, ops, name="C3")(x)
        x = tap(self, "c3", lecun_tanh(x))                                             # (B, 10, 10, 16)
        x = tap(self, "s4", lecun_tanh(Subsampling(ops, name="S4")(x)))                # (B, 5, 5, 16)
        x = lecun_tanh(ops.conv(x, 120, 5, name="C5", **conv))                         # (B, 1, 1, 120)
        x = tap(self, "c5", flatten_nchw(x))                                           # (B, 120)
        x = lecun_tanh(ops.dense(x, 84, kernel_init=classic_kernel_init, bias_init=nn.initializers.zeros,
                                 name="F6"))
        x = tap(self, "f6", x)
        x = tap(self, "pre_logits", x)                                                 # (B, 84)
        return ops.dense(x, self.num_classes, kernel_init=classic_kernel_init, bias_init=nn.initializers.zeros,
                         name="output")


# ----------------------------------------------------------------------------- variants
LENET = Family("lenet", paper=PAPER, head=("fc3",), input_size=28)


@register(LENET, params=61_706, paper=PAPER + " (modern form: ReLU, max-pooling, full C3)")
def lenet5(**kwargs) -> LeNet5:
    return LeNet5(in_channels=1, **kwargs)


# The paper's 60,000 parameters up to F6 (C1 156 + S2 12 + C3 1,516 + S4 32 + C5 48,120 + F6 10,164)
# plus our Dense output layer, 84 * 10 + 10 = 850: 60,000 + 850 = 60,850 with 10 classes.
@register(LENET, params=60_000 + 850, head=("output",), input_size=32, paper=PAPER + ", sec. II.B and Table I")
def lenet5_classic(**kwargs) -> LeNet5Classic:
    return LeNet5Classic(in_channels=1, **kwargs)
