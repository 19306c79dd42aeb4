"""The concatenating multi-branch block (zoo.branches): branches run on the same input and are
concatenated in order along channels, nested blocks, pooling steps, the conv unit and its names."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from helpers import flat, images, random_variables, run_once
from zoo.branches import Concat, Conv, MultiBranch, Pool, run
from zoo.layers import Ops

OPS = Ops()
BLOCK = Concat((
    (Conv("a", 4, 1),),
    (Conv("b_1", 3, 1), Conv("b_2", 5, 3, padding=1)),
    (Pool("max", 3, 1, 1), Conv("c", 2, 1)),
    (Conv("d", 6, 1), Concat(((Conv("d_x", 1, (1, 3), padding=(0, 1)),), (Conv("d_y", 2, (3, 1), padding=(1, 0)),)))),
))


class _Host(nn.Module):
    """A model holding one block as module ``m`` (the shape ``helpers.random_variables`` initialises)."""

    block: Concat

    @nn.compact
    def __call__(self, x, train: bool = False):
        return MultiBranch(self.block, Ops(train=train), name="m")(x)


def _apply(block, v, x):
    return _Host(block).apply(v, x)


def test_branches_are_concatenated_in_order():
    x = images((2, 8, 8, 7))
    v = random_variables(_Host(BLOCK), (8, 8, 7))
    # each branch alone, with the same (named) parameters, is the matching slice of the block's output
    singles = [Concat((branch,)) for branch in BLOCK.branches]
    names = [{s.name for s in b if isinstance(s, Conv)} | ({"d_x", "d_y"} if i == 3 else set())
             for i, b in enumerate(BLOCK.branches)]
    subsets = [{c: {"m": {k: v[c]["m"][k] for k in n}} for c in ("params", "batch_stats")} for n in names]
    out, parts = run_once(lambda v, x: (_apply(BLOCK, v, x), [_apply(b, s, x) for b, s in zip(singles, subsets)]),
                          v, x)
    assert out.shape == (2, 8, 8, 4 + 5 + 2 + 3)   # the nested split: 1 + 2 channels
    np.testing.assert_allclose(np.asarray(out), np.concatenate([np.asarray(p) for p in parts], -1), rtol=1e-6)


def test_conv_steps_are_basic_convs_named_after_the_step():
    v = random_variables(_Host(BLOCK), (8, 8, 7))
    params, stats = flat(v["params"]["m"]), flat(v["batch_stats"]["m"])
    assert params["b_2/conv/kernel"].shape == (3, 3, 3, 5) and "b_2/conv/bias" not in params
    assert params["b_2/bn/scale"].shape == (5,) and stats["b_2/bn/mean"].shape == (5,)
    assert params["d_x/conv/kernel"].shape == (1, 3, 6, 1) and params["d_y/conv/kernel"].shape == (3, 1, 6, 2)
    assert params["c/conv/kernel"].shape == (1, 1, 7, 2)   # after the pool: the block's input channels


def test_another_unit_and_strides():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x):
            unit = lambda ops, x, s: nn.relu(ops.conv(x, s.features, s.kernel, strides=s.strides, padding=s.padding,
                                                       use_bias=True, name=s.name))
            block = Concat(((Conv("p", 4, 3, strides=2),), (Pool("avg", 3, 2),)))
            return run(OPS, x, block, unit=unit)

    v = jax.eval_shape(lambda: Plain().init(jax.random.key(0), np.zeros((1, 9, 9, 3), np.float32)))
    assert set(flat(v["params"])) == {"p/kernel", "p/bias"}  # no sub-module, no norm
    out = jax.eval_shape(lambda v: Plain().apply(v, np.zeros((1, 9, 9, 3), np.float32)), v)
    assert out.shape == (1, 4, 4, 4 + 3)  # (9 - 3) // 2 + 1 = 4 for both branches


def test_pool_kind_is_checked():
    with pytest.raises(ValueError, match=r"^kind='min': allowed values are \('max', 'avg'\)$"):
        Pool("min", 3, 1)


def test_basic_conv_is_conv_bn_relu():
    x = images((1, 5, 5, 2))
    block = Concat(((Conv("u", 3, 3, padding=1),),))
    v = random_variables(_Host(block), (5, 5, 2))
    y = np.asarray(_apply(block, v, x))
    k = np.asarray(v["params"]["m"]["u"]["conv"]["kernel"])
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = sum(xp[:, i:i + 5, j:j + 5, :] @ k[i, j] for i in range(3) for j in range(3))  # BN: scale 1, mean 0, var 1
    np.testing.assert_allclose(y, np.maximum(ref / np.sqrt(1 + OPS.bn_epsilon), 0), rtol=1e-4, atol=1e-5)
