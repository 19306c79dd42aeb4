"""AlexNet against Krizhevsky et al. 2012 (alexnet_v1: layer sizes, two-tower groups, the local response
normalisation of sec. 3.3, the init of sec. 5) and torchvision (alexnet: module names, PyTorch default
init). Shapes and counts use jax.eval_shape (no compilation)."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, count, draw, forward_shapes, images, key, layer_modules, reference
from zoo import alexnet
from zoo.layers import conv_output_size, local_response_norm

# ---------------------------------------------------------------------- LRN (sec. 3.3)


def test_lrn_hand_computed():
    # One pixel, channels 1..7, size 5, alpha = 5 (alpha / size = 1), beta = 1, k = 2:
    # channel 0 sees channels 0..2: 1 + 4 + 9 = 14 -> 1 / (2 + 14) = 0.0625;
    # channel 3 sees 1..5: 4 + 9 + 16 + 25 + 36 = 90 -> 4 / 92; channel 6 sees 4..6: 110 -> 7 / 112.
    x = jnp.arange(1.0, 8.0).reshape(1, 1, 1, 7)
    y = np.asarray(local_response_norm(x, 5, alpha=5.0, beta=1.0, k=2.0))[0, 0, 0]
    np.testing.assert_allclose(y[[0, 3, 6]], [0.0625, 4 / 92, 0.0625], rtol=1e-6)
    # The paper's k=2, n=5, alpha=1e-4, beta=0.75 (alpha multiplied by n for PyTorch's convention):
    # one active channel a = 10 -> 10 / (2 + 1e-4 * 100)^0.75.
    a = jnp.zeros((1, 1, 1, 7)).at[..., 3].set(10.0)
    y = np.asarray(local_response_norm(a, alexnet.LRN_N, alpha=alexnet.LRN_N * alexnet.LRN_ALPHA,
                                       beta=alexnet.LRN_BETA, k=alexnet.LRN_K))[0, 0, 0]
    np.testing.assert_allclose(y, [0, 0, 0, 10 / 2.01 ** 0.75, 0, 0, 0], rtol=1e-6)


@pytest.mark.parametrize("size", [5, 4])
def test_lrn_matches_the_papers_sum(size):
    """Sec. 3.3: b_i = a_i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_j^2)^beta
    (for even n, PyTorch's window is i - n//2 .. i + (n - 1)//2)."""
    x = images((2, 3, 4, 11)) * 20
    k, alpha, beta = 2.0, 1e-4, 0.75
    ref = np.empty_like(x)
    for i in range(11):
        lo, hi = max(0, i - size // 2), min(10, i + (size - 1) // 2)
        ref[..., i] = x[..., i] / (k + alpha * (x[..., lo:hi + 1] ** 2).sum(-1)) ** beta
    np.testing.assert_allclose(local_response_norm(jnp.asarray(x), size, alpha=size * alpha, beta=beta, k=k), ref,
                               rtol=1e-5)


# ---------------------------------------------------------------------- alexnet_v1 (2012)

def test_alexnet_v1_conv1_worked_example():
    """227x227x3, 96 filters of 11x11, stride 4 -> 55x55x96, 34,944 parameters (the notes)."""
    rows = {r.path: r for r in zoo.layer_table(zoo.create("alexnet_v1"), (227, 227, 3))}
    assert rows["conv1"].output_shape == (1, 55, 55, 96)
    assert rows["conv1"].params == 34_944


def test_alexnet_v1_layers():
    rows = {r.path: r for r in zoo.layer_table(zoo.create("alexnet_v1"), (227, 227, 3))}
    assert {k: r.params for k, r in rows.items()} == {
        "conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
        "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
    assert sum(r.params for r in rows.values()) == 60_965_224 == zoo.model_info("alexnet_v1").params
    assert zoo.model_info("alexnet_v1").params == reference()["models"]["alexnet_v1"]["params"]
    params = abstract_variables("alexnet_v1")["params"]  # two GPU towers = 2 groups
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)
    assert params["conv4"]["kernel"].shape == (3, 3, 192, 384)
    assert params["conv5"]["kernel"].shape == (3, 3, 192, 256)
    feats, logits = forward_shapes("alexnet_v1")
    assert feats == {"relu1": (1, 55, 55, 96), "relu2": (1, 27, 27, 256), "relu3": (1, 13, 13, 384),
                     "relu4": (1, 13, 13, 384), "relu5": (1, 13, 13, 256), "relu6": (1, 4096), "relu7": (1, 4096),
                     "pre_logits": (1, 4096)}
    assert logits == (1, 1000)


def test_alexnet_v1_takes_227_only():
    with pytest.raises(ValueError, match="227"):
        abstract_variables("alexnet_v1", (224, 224, 3))


def test_alexnet_v1_init_follows_the_paper():
    """Sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0 (each layer's
    initialisers, drawn at a small shape)."""
    layers = layer_modules("alexnet_v1")
    assert sorted(layers) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for path, mod in layers.items():
        assert abs(draw(mod.kernel_init, (64, 512)).std() - 0.01) < 0.0005, path
        one = path in ("conv2", "conv4", "conv5", "fc6", "fc7")
        np.testing.assert_array_equal(draw(mod.bias_init, (16,)), np.full(16, 1.0 if one else 0.0))


@pytest.mark.slow
def test_alexnet_v1_init_end_to_end():
    params = jax.jit(zoo.create("alexnet_v1", num_classes=10).init)(key(0), jnp.zeros((1, 227, 227, 3)))
    for name, p in params["params"].items():
        assert float(jnp.abs(p["bias"] - (name in ("conv2", "conv4", "conv5", "fc6", "fc7"))).max()) == 0.0, name
        assert abs(float(p["kernel"].std()) - 0.01) < 0.001, name


# ---------------------------------------------------------------------- alexnet (torchvision)

def test_alexnet_torchvision_names():
    params = abstract_variables("alexnet")["params"]
    shapes = {k: {p: a.shape for p, a in v.items()} for k, v in params.items()}
    assert shapes == {
        "features_0": {"kernel": (11, 11, 3, 64), "bias": (64,)},
        "features_3": {"kernel": (5, 5, 64, 192), "bias": (192,)},
        "features_6": {"kernel": (3, 3, 192, 384), "bias": (384,)},
        "features_8": {"kernel": (3, 3, 384, 256), "bias": (256,)},
        "features_10": {"kernel": (3, 3, 256, 256), "bias": (256,)},
        "classifier_1": {"kernel": (9216, 4096), "bias": (4096,)},
        "classifier_4": {"kernel": (4096, 4096), "bias": (4096,)},
        "classifier_6": {"kernel": (4096, 1000), "bias": (1000,)},
    }


def test_alexnet_norm_option_takes_the_next_index():
    """As torchvision's vgg*_bn: conv, norm, ReLU [, pool]; the conv loses its bias."""
    params = abstract_variables("alexnet", norm="batch")["params"]
    convs, norms = (0, 4, 8, 11, 14), (1, 5, 9, 12, 15)
    assert set(params) == ({f"features_{i}" for i in convs + norms}
                           | {"classifier_1", "classifier_4", "classifier_6"})
    assert all(set(params[f"features_{i}"]) == {"kernel"} for i in convs)
    biases = 64 + 192 + 384 + 256 + 256
    assert count(params) == reference()["models"]["alexnet"]["params"] - biases + 2 * biases


def test_alexnet_min_input_size_is_63():
    def fits(n):  # torchvision's layers: conv 11/4 p2, pool 3/2, conv 5 p2, pool 3/2, 3 convs 3 p1, pool 3/2
        try:
            n = conv_output_size(n, 11, 2, 4)
            for _ in range(3):
                n = conv_output_size(n, 3, 0, 2)
            return True
        except ValueError:
            return False
    assert min(n for n in range(1, 100) if fits(n)) == 63 == zoo.create("alexnet").input_spec().min_size
    feats, logits = forward_shapes("alexnet", (63, 63, 3))
    assert feats["relu5"] == (1, 3, 3, 256) and logits == (1, 1000)
    with pytest.raises(ValueError, match="too small"):
        forward_shapes("alexnet", (62, 62, 3))


def test_alexnet_taps():
    feats, _ = forward_shapes("alexnet")
    assert feats == {"relu1": (1, 55, 55, 64), "relu2": (1, 27, 27, 192), "relu3": (1, 13, 13, 384),
                     "relu4": (1, 13, 13, 256), "relu5": (1, 13, 13, 256), "relu6": (1, 4096), "relu7": (1, 4096),
                     "pre_logits": (1, 4096)}


def test_alexnet_init_is_pytorch_default():
    """torchvision's AlexNet keeps nn.Conv2d / nn.Linear defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    layers = layer_modules("alexnet")
    assert len(layers) == 8
    for path, mod in layers.items():
        shape = (5, 5, 8, 16) if isinstance(mod, nn.Conv) else (200, 16)
        bound = 1 / math.sqrt(math.prod(shape[:-1]))
        w = draw(mod.kernel_init, shape)
        assert w.max() <= bound and w.min() >= -bound and w.max() > 0.9 * bound, path
        # the bias bound is fixed by the layer's real fan-in: within it, and not all zero
        b = draw(mod.bias_init, (64,))
        assert np.abs(b).max() <= 1 / math.sqrt(11 * 11 * 3) and np.abs(b).max() > 0, path


@pytest.mark.parametrize("name", ["alexnet", "alexnet_v1"])
def test_alexnet_bad_dropout(name):
    with pytest.raises(ValueError, match="dropout"):
        zoo.create(name, dropout=-0.1)
