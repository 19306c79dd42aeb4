"""LeNet-5, AlexNet and VGG against their papers and torchvision: per-layer parameter counts, the
C3 connection table of LeCun et al. 1998, the local response normalisation of Krizhevsky et al.
2012, torchvision's module names and init. Shapes and counts use jax.eval_shape (no compilation);
the few compiled passes run on small inputs."""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo import alexnet, lenet, vgg
from zoo.layers import conv_output_size, flatten_nchw, local_response_norm


def _abstract_params(name, **overrides):
    info = zoo.model_info(name)
    model = zoo.create(name, **overrides)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *info.input_shape))))


def _count(tree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _feature_shapes(name, input_shape=None, **overrides):
    """{tap name: shape} and the logits shape, for one image, under eval_shape."""
    info = zoo.model_info(name)
    input_shape = input_shape or info.input_shape
    model = zoo.create(name, **overrides)
    x = jnp.zeros((1, *input_shape))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    logits, state = jax.eval_shape(lambda v: model.apply(v, x, mutable=["features"]), v)
    return {k: tuple(a.shape) for k, a in state["features"].items()}, tuple(logits.shape)


def _initialisers(name, **overrides):
    """{layer path: (module type, {attribute: initialiser})} of the conv, dense and norm layers,
    captured while tracing ``init`` under eval_shape (nothing is drawn)."""
    found = {}

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.Conv, nn.Dense)):
            found["/".join(mod.path)] = ("dense" if isinstance(mod, nn.Dense) else "conv",
                                         dict(kernel=mod.kernel_init, bias=mod.bias_init if mod.use_bias else None))
        elif context.method_name == "__call__" and isinstance(mod, (nn.BatchNorm, nn.GroupNorm)):
            found["/".join(mod.path)] = ("norm", dict(scale=mod.scale_init, bias=mod.bias_init))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        _abstract_params(name, **overrides)
    return found


def _draw(init, shape):
    # rbg: XLA's threefry is slow to compile on CPU; the statistics are the initialiser's either way.
    return np.asarray(init(jax.random.key(0, impl="rbg"), shape, jnp.float32))


# =============================================================================== LeNet-5

def test_lenet5_classic_per_layer_params_are_the_papers():
    params = _abstract_params("lenet5_classic")["params"]
    per_layer = {k: _count(v) for k, v in params.items()}
    assert per_layer == {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "output": 850}
    assert sum(n for k, n in per_layer.items() if k != "output") == 60_000  # the paper's figure up to F6
    assert zoo.model_info("lenet5_classic").params == 60_000 + 84 * 10 + 10 == _count(params)


def test_lenet5_classic_c3_is_the_papers_table_i():
    # Table I of LeCun et al. 1998, read column by column: the S2 maps feeding each C3 map.
    expected = [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
                (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
                (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
                (0, 1, 2, 3, 4, 5)]
    assert lenet.connection_table() == tuple(expected)
    # The text's description: 0-5 take 3 contiguous maps, 6-11 take 4 contiguous (cyclically),
    # 12-14 take 4 non-contiguous, 15 takes all 6: 60 connections in all.
    for j in range(6):
        assert set(expected[j]) == {(j + t) % 6 for t in range(3)}
        assert set(expected[6 + j]) == {(j + t) % 6 for t in range(4)}
    assert sum(map(len, expected)) == 60


def test_lenet5_classic_c3_stores_only_connected_kernels():
    c3 = _abstract_params("lenet5_classic")["params"]["C3"]
    assert {k: a.shape for k, a in c3.items()} == {"kernel": (5, 5, 60), "bias": (16,)}  # 60 X's in Table I


@functools.lru_cache(maxsize=None)
def _classic_variables():
    """lenet5_classic with random numpy weights (no init compilation: XLA's threefry is slow to
    compile on CPU, and the values do not matter here)."""
    model = zoo.create("lenet5_classic")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return model, x, jax.tree.map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape), jnp.float32), shapes)


def test_lenet5_classic_c3_connections_follow_table_i():
    """Perturbing S2 map i changes C3 map j exactly where Table I has an X."""
    model, x, v = _classic_variables()
    c3 = jax.jit(lambda t: model.apply({**v, "taps": {"s2": t}}, x, mutable=["features"])[1]["features"]["c3"])
    zero = jnp.zeros((2, 14, 14, 6))
    base = np.asarray(c3(zero))
    changed = [np.abs(np.asarray(c3(zero.at[..., i].set(0.5))) - base).max(axis=(0, 1, 2)) for i in range(6)]
    connected = np.stack(changed) > 1e-4  # (6 S2 maps, 16 C3 maps)
    np.testing.assert_array_equal(connected, [[c == "X" for c in row] for row in lenet.TABLE_I])


def test_lenet5_classic_c3_equals_masked_full_convolution():
    model, x, v = _classic_variables()
    _, state = jax.jit(lambda v: model.apply(v, x, mutable=["features"]))(v)
    s2, c3 = state["features"]["s2"], state["features"]["c3"]
    packed = np.asarray(v["params"]["C3"]["kernel"])  # one 5x5 kernel per X, C3 map by C3 map
    full = np.zeros((5, 5, 6, 16), np.float32)
    connections = [(i, j) for j, maps in enumerate(lenet.connection_table()) for i in maps]
    for t, (i, j) in enumerate(connections):
        full[:, :, i, j] = packed[:, :, t]
    ref = jax.lax.conv_general_dilated(s2, full, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=jax.lax.Precision.HIGHEST) + v["params"]["C3"]["bias"]
    np.testing.assert_allclose(c3, lenet.lecun_tanh(ref), atol=2e-5)


def test_lenet5_classic_c3_init_variance_follows_each_maps_fan_in():
    model = zoo.create("lenet5_classic")
    kernel = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 32, 32, 1)))["params"]["C3"]["kernel"]
    fan_in = np.array([25 * len(maps) for maps in lenet.connection_table() for _ in maps])  # per connection
    bound = np.abs(np.asarray(kernel)).max(axis=(0, 1))
    assert (bound <= np.sqrt(3 / fan_in)).all() and (bound > 0.8 * np.sqrt(3 / fan_in)).all()


def test_lenet5_classic_c3_macs_in_the_summary():
    rows = {r.path: r for r in zoo.layer_table(zoo.create("lenet5_classic"), (32, 32, 1))}
    assert rows["C3"].macs == 10 * 10 * 60 * 25  # 10x10 outputs, 60 connected 5x5 kernels
    assert [rows[k].params for k in ("C1", "S2", "C3", "S4", "C5", "F6")] == [156, 12, 1516, 32, 48120, 10164]


def test_lenet5_classic_subsampling_and_squashing():
    model, x, v = _classic_variables()
    params = jax.tree.map(lambda a: a, v["params"])
    params["S2"] = {"coefficient": jnp.arange(1.0, 7.0) / 10, "bias": jnp.full((6,), -0.2)}
    _, state = jax.jit(lambda p: model.apply({"params": p}, x, mutable=["features"]))(params)
    c1, s2 = np.asarray(state["features"]["c1"]), np.asarray(state["features"]["s2"])
    window_sum = c1.reshape(2, 14, 2, 14, 2, 6).sum(axis=(2, 4))
    expected = 1.7159 * np.tanh(2.0 / 3.0 * (window_sum * np.arange(1.0, 7.0) / 10 - 0.2))
    np.testing.assert_allclose(s2, expected, atol=2e-5)
    assert abs(float(lenet.lecun_tanh(1.0)) - 1.0) < 1e-4  # f(1) = 1 (Appendix A)


def test_lenet5_classic_shapes():
    feats, logits = _feature_shapes("lenet5_classic")
    assert feats == {"c1": (1, 28, 28, 6), "s2": (1, 14, 14, 6), "c3": (1, 10, 10, 16), "s4": (1, 5, 5, 16),
                     "c5": (1, 120), "f6": (1, 84), "pre_logits": (1, 84)}
    assert logits == (1, 10)


def test_lenet5_shapes_and_params():
    feats, logits = _feature_shapes("lenet5")
    assert feats == {"c1": (1, 28, 28, 6), "s2": (1, 14, 14, 6), "c3": (1, 10, 10, 16), "s4": (1, 5, 5, 16),
                     "c5": (1, 120), "f6": (1, 84), "pre_logits": (1, 84)}
    sizes = [feats[k][1] for k in ("c1", "s2", "c3", "s4", "c5", "f6")] + [logits[1]]
    assert sizes == [28, 14, 10, 5, 120, 84, 10]
    params = _abstract_params("lenet5")["params"]
    assert {k: _count(v) for k, v in params.items()} == {"conv1": 156, "conv2": 2_416, "fc1": 48_120,
                                                         "fc2": 10_164, "fc3": 850}
    assert _count(params) == 61_706 == zoo.model_info("lenet5").params


def test_lenet5_norm_option_replaces_conv_bias():
    params = _abstract_params("lenet5", norm="batch")["params"]
    assert set(params["conv1"]) == {"kernel"} and set(params["bn1"]) == {"scale", "bias"}


@pytest.mark.parametrize("name, size", [("lenet5", 32), ("lenet5_classic", 28)])
def test_lenet_input_size_is_exact(name, size):
    with pytest.raises(ValueError, match=r"expected \(B, H, W, 1\)"):
        jax.eval_shape(lambda: zoo.create(name).init(jax.random.key(0), jnp.zeros((1, size, size, 1))))


def test_lenet5_classic_has_no_norm_option():
    with pytest.raises(ValueError, match="norm.*allowed"):
        zoo.create("lenet5_classic", norm="batch")


# =============================================================================== LRN

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
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 11)).astype(np.float32) * 20
    k, alpha, beta = 2.0, 1e-4, 0.75
    ref = np.empty_like(x)
    for i in range(11):
        lo, hi = max(0, i - size // 2), min(10, i + (size - 1) // 2)
        ref[..., i] = x[..., i] / (k + alpha * (x[..., lo:hi + 1] ** 2).sum(-1)) ** beta
    np.testing.assert_allclose(local_response_norm(jnp.asarray(x), size, alpha=size * alpha, beta=beta, k=k), ref,
                               rtol=1e-5)


def test_flatten_is_pytorchs_channel_major_order():
    x_nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(flatten_nchw(jnp.asarray(x_nchw.transpose(0, 2, 3, 1))), x_nchw.reshape(2, -1))


# =============================================================================== AlexNet

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
    params = _abstract_params("alexnet_v1")["params"]  # two GPU towers = 2 groups
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)
    assert params["conv4"]["kernel"].shape == (3, 3, 192, 384)
    assert params["conv5"]["kernel"].shape == (3, 3, 192, 256)
    feats, logits = _feature_shapes("alexnet_v1")
    assert feats == {"relu1": (1, 55, 55, 96), "relu2": (1, 27, 27, 256), "relu3": (1, 13, 13, 384),
                     "relu4": (1, 13, 13, 384), "relu5": (1, 13, 13, 256), "relu6": (1, 4096), "relu7": (1, 4096),
                     "pre_logits": (1, 4096)}
    assert logits == (1, 1000)


def test_alexnet_v1_takes_227_only():
    with pytest.raises(ValueError, match="227"):
        jax.eval_shape(lambda: zoo.create("alexnet_v1").init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))


def test_alexnet_torchvision_names():
    params = _abstract_params("alexnet")["params"]
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
    params = _abstract_params("alexnet", norm="batch")["params"]
    convs, norms = (0, 4, 8, 11, 14), (1, 5, 9, 12, 15)
    assert set(params) == ({f"features_{i}" for i in convs + norms}
                           | {"classifier_1", "classifier_4", "classifier_6"})
    assert all(set(params[f"features_{i}"]) == {"kernel"} for i in convs)
    biases = 64 + 192 + 384 + 256 + 256
    assert _count(params) == 61_100_840 - biases + 2 * biases


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
    feats, logits = _feature_shapes("alexnet", (63, 63, 3))
    assert feats["relu5"] == (1, 3, 3, 256) and logits == (1, 1000)
    with pytest.raises(ValueError, match="too small"):
        _feature_shapes("alexnet", (62, 62, 3))


def test_alexnet_taps():
    feats, _ = _feature_shapes("alexnet")
    assert feats == {"relu1": (1, 55, 55, 64), "relu2": (1, 27, 27, 192), "relu3": (1, 13, 13, 384),
                     "relu4": (1, 13, 13, 256), "relu5": (1, 13, 13, 256), "relu6": (1, 4096), "relu7": (1, 4096),
                     "pre_logits": (1, 4096)}


def test_alexnet_v1_init_follows_the_paper():
    """Sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0 (each layer's
    initialisers, drawn at a small shape)."""
    inits = _initialisers("alexnet_v1")
    assert sorted(inits) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for path, (_, init) in inits.items():
        assert abs(_draw(init["kernel"], (64, 512)).std() - 0.01) < 0.0005, path
        one = path in ("conv2", "conv4", "conv5", "fc6", "fc7")
        np.testing.assert_array_equal(_draw(init["bias"], (16,)), np.full(16, 1.0 if one else 0.0))


@pytest.mark.slow
def test_alexnet_v1_init_end_to_end():
    params = jax.jit(zoo.create("alexnet_v1", num_classes=10).init)(jax.random.key(0), jnp.zeros((1, 227, 227, 3)))
    for name, p in params["params"].items():
        assert float(jnp.abs(p["bias"] - (name in ("conv2", "conv4", "conv5", "fc6", "fc7"))).max()) == 0.0, name
        assert abs(float(p["kernel"].std()) - 0.01) < 0.001, name


def test_alexnet_init_is_pytorch_default():
    """torchvision's AlexNet keeps nn.Conv2d / nn.Linear defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    inits = _initialisers("alexnet")
    assert len(inits) == 8
    for path, (kind, init) in inits.items():
        shape = (5, 5, 8, 16) if kind == "conv" else (200, 16)
        bound = 1 / math.sqrt(math.prod(shape[:-1]))
        w = _draw(init["kernel"], shape)
        assert w.max() <= bound and w.min() >= -bound and w.max() > 0.9 * bound, path
        # the bias bound is fixed by the layer's real fan-in: within it, and not all zero
        b = _draw(init["bias"], (64,))
        assert np.abs(b).max() <= 1 / math.sqrt(11 * 11 * 3) and np.abs(b).max() > 0, path


# =============================================================================== VGG

def _torchvision_features(cfg, batch_norm):
    """torchvision's make_layers, as names: {index: kind} of its features nn.Sequential."""
    layers = []
    for v in cfg:
        layers += ["pool"] if v == "M" else (["conv", "bn", "relu"] if batch_norm else ["conv", "relu"])
    return {i: kind for i, kind in enumerate(layers) if kind in ("conv", "bn")}


@pytest.mark.parametrize("name", [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")])
def test_vgg_names_and_shapes_follow_torchvision(name):
    v = _abstract_params(name, num_classes=10)
    cfg = vgg.CFGS[zoo.create(name).cfg]
    layers = _torchvision_features(cfg, name.endswith("_bn"))
    expected = {f"features_{i}": ({"kernel", "bias"} if kind == "conv" else {"scale", "bias"})
                for i, kind in layers.items()}
    expected.update({f"classifier_{i}": {"kernel", "bias"} for i in (0, 3, 6)})
    assert {k: set(p) for k, p in v["params"].items()} == expected
    convs = [v["params"][f"features_{i}"]["kernel"].shape for i, kind in layers.items() if kind == "conv"]
    channels = [c for c in cfg if c != "M"]
    assert convs == [(3, 3, cin, cout) for cin, cout in zip([3] + channels[:-1], channels)]
    assert v["params"]["classifier_0"]["kernel"].shape == (512 * 7 * 7, 4096)
    assert v["params"]["classifier_6"]["kernel"].shape == (4096, 10)
    if name.endswith("_bn"):
        assert set(v["batch_stats"]) == {f"features_{i}" for i, kind in layers.items() if kind == "bn"}


def test_vgg16_taps_keras_names():
    feats, logits = _feature_shapes("vgg16")
    blocks = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
    assert set(feats) == {f"block{b}_conv{c}" for b, n in blocks.items() for c in range(1, n + 1)} | {"pre_logits"}
    assert feats["block1_conv2"] == (1, 224, 224, 64)
    assert feats["block3_conv1"] == (1, 56, 56, 256)
    assert feats["block5_conv3"] == (1, 14, 14, 512)
    assert feats["pre_logits"] == (1, 4096) and logits == (1, 1000)


@pytest.mark.parametrize("norm", ["group", "layer", "instance"])
def test_vgg_other_norms_build(norm):
    v = _abstract_params("vgg11", norm=norm)
    assert "batch_stats" not in v
    assert set(v["params"]["features_1"]) == {"scale", "bias"}
    assert _count(v["params"]) == zoo.model_info("vgg11_bn").params


def test_vgg_min_input_32():
    feats, logits = _feature_shapes("vgg11", (32, 32, 3))
    assert feats["block5_conv2"] == (1, 2, 2, 512) and logits == (1, 1000)
    with pytest.raises(ValueError, match="too small"):
        _feature_shapes("vgg11", (31, 31, 3))


@pytest.mark.parametrize("override, pattern", [
    (dict(cfg="C"), "cfg.*allowed"),
    (dict(dropout=1.0), "dropout"),
    (dict(norm="bn"), "norm.*allowed"),
])
def test_vgg_bad_options(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        vgg.VGG(**override)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_v1"])
def test_alexnet_bad_dropout(name):
    with pytest.raises(ValueError, match="dropout"):
        zoo.create(name, dropout=-0.1)


def test_vgg_init_is_torchvisions():
    """Convs kaiming_normal_(mode='fan_out', nonlinearity='relu') with zero bias, Linear N(0, 0.01)
    with zero bias, BatchNorm 1 / 0 (each layer's initialisers, drawn at a small shape)."""
    inits = _initialisers("vgg11_bn")
    assert [k for k, (kind, _) in inits.items() if kind == "dense"] == ["classifier_0", "classifier_3", "classifier_6"]
    for path, (kind, init) in inits.items():
        if kind == "conv":  # std sqrt(2 / fan_out), fan_out = 3 * 3 * C_out
            assert abs(_draw(init["kernel"], (3, 3, 16, 64)).std() / math.sqrt(2 / (9 * 64)) - 1) < 0.05, path
        elif kind == "dense":
            assert abs(_draw(init["kernel"], (64, 512)).std() - 0.01) < 0.0005, path
        else:
            np.testing.assert_array_equal(_draw(init["scale"], (16,)), np.ones(16))
        np.testing.assert_array_equal(_draw(init["bias"], (16,)), np.zeros(16))


@pytest.mark.slow
def test_vgg_init_end_to_end_and_train_step():
    model = zoo.create("vgg11_bn", num_classes=10)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    v = jax.jit(model.init)(jax.random.key(0), x)
    for name, layer in v["params"].items():
        assert float(jnp.abs(layer["bias"]).max()) == 0.0, name
        if "scale" in layer:
            assert float(jnp.abs(layer["scale"] - 1).max()) == 0.0, name
        elif name.startswith("classifier"):
            assert abs(float(layer["kernel"].std()) - 0.01) < 0.0005, name
        else:
            std = math.sqrt(2.0 / (9 * layer["kernel"].shape[-1]))
            assert abs(float(layer["kernel"].std()) / std - 1) < 0.1, name
    apply = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]))
    y1, upd = apply(v, x, jax.random.key(1))
    y2, _ = apply(v, x, jax.random.key(2))
    assert y1.shape == (2, 10) and np.isfinite(np.asarray(y1)).all()
    assert not np.allclose(y1, y2)  # dropout 0.5 in the classifier
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), v["batch_stats"], upd["batch_stats"])
    assert all(jax.tree.leaves(changed))
