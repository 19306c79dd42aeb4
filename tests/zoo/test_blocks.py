"""zoo.blocks: squeeze-and-excitation against its formula (Hu et al. eq. 2-4, with torchvision's gates),
drop-path against torchvision's StochasticDepth(mode="row") semantics (per-example mask, 1/keep scaling,
train mode only), and the inverted residual's structure: torchvision's names in both layouts, when the
expansion and the shortcut exist, fused-MBConv."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from helpers import abstract_variables, flat, images, key
from zoo.blocks import InvertedResidual, SqueezeExcitation, drop_path
from zoo.layers import Ops, hard_sigmoid


def _relu(s):
    return np.maximum(s, 0)


def _silu(s):
    return s / (1 + np.exp(-s))


def _sigmoid(s):
    return 1 / (1 + np.exp(-s))


def _hard_sigmoid(s):
    return np.clip(s + 3, 0, 6) / 6


@pytest.mark.parametrize("act, gate, np_act, np_gate", [
    (None, None, _relu, _sigmoid),                   # torchvision's defaults (Hu et al.: ReLU, sigmoid)
    (nn.relu, hard_sigmoid, _relu, _hard_sigmoid),   # MobileNetV3
    (nn.silu, jax.nn.sigmoid, _silu, _sigmoid),      # EfficientNet
])
def test_squeeze_excitation_matches_formula(act, gate, np_act, np_gate):
    x = images((2, 4, 4, 3))
    kwargs = {k: v for k, v in dict(act=act, gate=gate).items() if v is not None}
    se = SqueezeExcitation(8, Ops(), **kwargs)
    p = jax.jit(se.init)(key(0), x)["params"]
    p = jax.tree.map(lambda a: a + 0.3, p)  # nonzero biases
    s = x.mean(axis=(1, 2))  # squeeze: (B, C)
    s = np_act(s @ np.asarray(p["fc1"]["kernel"])[0, 0] + np.asarray(p["fc1"]["bias"]))  # (B, 8)
    s = s @ np.asarray(p["fc2"]["kernel"])[0, 0] + np.asarray(p["fc2"]["bias"])  # excitation: (B, C)
    expected = x * np_gate(s)[:, None, None, :]
    np.testing.assert_allclose(jax.jit(se.apply)({"params": p}, x), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- drop-path

class Branch(nn.Module):
    """A residual branch through drop_path alone."""

    rate: float

    @nn.compact
    def __call__(self, x, train: bool):
        return drop_path(Ops(train=train), x, self.rate)


@jax.jit
def _drop(x, k):
    """(eval output without an rng, eval output with one, train output) at rate 0.3; train at rate 0."""
    branch = Branch(0.3)
    return (branch.apply({}, x, False), branch.apply({}, x, False, rngs={"dropout": k}),
            branch.apply({}, x, True, rngs={"dropout": k}), Branch(0.0).apply({}, x, True))


X = images((4000, 2, 3, 5)) + 2.0  # no zero entries: a dropped row is all zeros, a kept one has none


def test_drop_path_drops_whole_rows_at_the_rate_and_scales_survivors():
    _, _, out, _ = _drop(X, key(1))
    out = np.asarray(out)
    dropped = (out == 0).all(axis=(1, 2, 3))
    kept = (out != 0).all(axis=(1, 2, 3))
    assert (dropped | kept).all()  # per example: the whole (H, W, C) map, never single entries
    assert abs(dropped.mean() - 0.3) < 0.03  # 4 standard deviations of the fraction of 4000 rows
    np.testing.assert_allclose(out[kept], X[kept] / 0.7, rtol=1e-6)  # survivors scaled by 1 / keep


def test_drop_path_only_in_train_mode():
    eval1, eval_rng, train1, rate0 = _drop(X, key(1))
    _, _, train2, _ = _drop(X, key(2))
    np.testing.assert_array_equal(eval1, X)  # eval: the identity, deterministic, no rng needed
    np.testing.assert_array_equal(eval_rng, X)
    np.testing.assert_array_equal(rate0, X)  # rate 0: the identity in train mode as well
    assert not np.array_equal(train1, X) and not np.array_equal(train1, train2)  # another key, another mask
    np.testing.assert_array_equal(train1, _drop(X, key(1))[2])  # same key, same mask


def test_drop_path_needs_the_dropout_rng_in_train_mode():
    with pytest.raises(Exception, match="(?i)rng|dropout"):
        jax.eval_shape(lambda x: Branch(0.3).apply({}, x, True), X)


# ---------------------------------------------------------------------- the inverted residual

def _params(block, in_channels, size=8):
    return {k: v.shape for k, v in flat(abstract_variables(block, (size, size, in_channels))["params"]).items()}


def test_mbconv_nested_names_with_se():
    # EfficientNet's MBConv6 3x3, 16 -> 24: expand 96, depthwise, SE (squeeze 16 // 4 = 4), project.
    block = InvertedResidual(24, 96, Ops(), kernel=3, strides=2, act=nn.silu, se_channels=4)
    assert _params(block, 16) == {
        "block_0_0/kernel": (1, 1, 16, 96), "block_0_1/scale": (96,), "block_0_1/bias": (96,),
        "block_1_0/kernel": (3, 3, 1, 96), "block_1_1/scale": (96,), "block_1_1/bias": (96,),
        "block_2/fc1/kernel": (1, 1, 96, 4), "block_2/fc1/bias": (4,),
        "block_2/fc2/kernel": (1, 1, 4, 96), "block_2/fc2/bias": (96,),
        "block_3_0/kernel": (1, 1, 96, 24), "block_3_1/scale": (24,), "block_3_1/bias": (24,)}


def test_mbconv_flat_names_count_the_activations():
    # MnasNet's _InvertedResidual: conv, BN, ReLU, dw conv, BN, ReLU, conv, BN -> layers_0, 1, 3, 4, 6, 7.
    block = InvertedResidual(24, 48, Ops(), kernel=5, act=nn.relu, prefix="layers",
                             flat=("expand", "depthwise", "project"))
    assert set(_params(block, 16)) == {f"layers_{i}/{leaf}" for i in (0, 3, 6) for leaf in ("kernel",)} | \
        {f"layers_{i}/{leaf}" for i in (1, 4, 7) for leaf in ("scale", "bias")}


def test_no_expansion_when_expanded_equals_the_input():
    block = InvertedResidual(16, 32, Ops(), prefix="conv", flat=("project",))  # MobileNetV2, t = 1
    assert set(_params(block, 32)) == {"conv_0_0/kernel", "conv_0_1/scale", "conv_0_1/bias",
                                       "conv_1/kernel", "conv_2/scale", "conv_2/bias"}


@pytest.mark.parametrize("expanded, names", [
    (64, {"block_0_0/kernel": (3, 3, 16, 64), "block_1_0/kernel": (1, 1, 64, 16)}),  # fused expand, project
    (16, {"block_0_0/kernel": (3, 3, 16, 16)}),  # no expansion: one kxk conv
])
def test_fused_mbconv(expanded, names):
    params = _params(InvertedResidual(16, expanded, Ops(), fused=True, act=nn.silu), 16)
    assert {k: v for k, v in params.items() if k.endswith("kernel")} == names


@pytest.mark.parametrize("out, strides, shortcut", [(16, 1, True), (16, 2, False), (24, 1, False)])
def test_shortcut_only_when_stride_1_and_channels_match(out, strides, shortcut):
    x = images((2, 8, 8, 16))
    block = InvertedResidual(out, 32, Ops(norm_kind=None), strides=strides)  # convs with biases, no norm
    zeros = jax.tree.map(np.zeros_like, jax.jit(block.init)(key(0), x))  # the branch computes 0
    y = np.asarray(jax.jit(block.apply)(zeros, x))
    assert y.shape == (2, 8 // strides, 8 // strides, out)
    np.testing.assert_array_equal(y, x if shortcut else np.zeros_like(y))


def test_drop_path_acts_on_the_residual_branch_in_train_mode():
    x = images((64, 4, 4, 8))
    ops_eval, ops_train = Ops(norm_kind=None), Ops(norm_kind=None, train=True)
    block = InvertedResidual(8, 16, ops_train, drop_path=0.5)
    variables = jax.jit(block.init)(key(0), x)
    out = np.asarray(jax.jit(lambda v, x: block.apply(v, x, rngs={"dropout": key(3)}))(variables, x))
    plain = np.asarray(jax.jit(InvertedResidual(8, 16, ops_eval).apply)(variables, x))
    branch = plain - x  # the branch without drop-path (eval mode)
    dropped = np.isclose(out, x, atol=1e-6).all(axis=(1, 2, 3))  # x + 0
    kept = np.isclose(out, x + branch / 0.5, rtol=1e-4, atol=1e-5).all(axis=(1, 2, 3))  # x + branch / keep
    assert (dropped ^ kept).all() and 0 < dropped.sum() < 64


def test_unknown_flat_part_is_named():
    with pytest.raises(ValueError, match=r"flat='squeeze': allowed values are \('expand', 'depthwise', 'project'\)"):
        _params(InvertedResidual(8, 16, Ops(), flat=("squeeze",)), 8)
