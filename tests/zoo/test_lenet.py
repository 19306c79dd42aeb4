"""LeNet-5 against LeCun et al. 1998: per-layer parameter counts, the C3 connection table (Table I),
the trainable subsampling and the squashing function (Appendix A); and the modern textbook form.
Shapes and counts use jax.eval_shape (no compilation); the few compiled passes run on 32x32 inputs."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import abstract_variables, count, forward_shapes, images, key, reference
from zoo import lenet

PAPER = reference()["models"]["lenet5_classic"]


def test_lenet5_classic_per_layer_params_are_the_papers():
    params = abstract_variables("lenet5_classic")["params"]
    per_layer = {k: count(v) for k, v in params.items()}
    assert per_layer == {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "output": 850}
    assert {k: n for k, n in per_layer.items() if k != "output"} == PAPER["layer_params"]
    assert sum(n for k, n in per_layer.items() if k != "output") == 60_000 == PAPER["params_through_f6"]
    assert zoo.model_info("lenet5_classic").params == 60_000 + 84 * 10 + 10 == count(params)


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
    c3 = abstract_variables("lenet5_classic")["params"]["C3"]
    assert {k: a.shape for k, a in c3.items()} == {"kernel": (5, 5, 60), "bias": (16,)}  # 60 X's in Table I


@functools.lru_cache(maxsize=None)
def _classic_variables():
    """lenet5_classic with random numpy weights (no init compilation: XLA's threefry is slow to
    compile on CPU, and the values do not matter here)."""
    model = zoo.create("lenet5_classic")
    rng = np.random.default_rng(0)
    shapes = abstract_variables(model, (32, 32, 1))
    return model, images((2, 32, 32, 1)), jax.tree.map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape),
                                                                            jnp.float32), shapes)


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
    kernel = jax.jit(model.init)(key(0), jnp.zeros((1, 32, 32, 1)))["params"]["C3"]["kernel"]
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
    feats, logits = forward_shapes("lenet5_classic")
    assert feats == {"c1": (1, 28, 28, 6), "s2": (1, 14, 14, 6), "c3": (1, 10, 10, 16), "s4": (1, 5, 5, 16),
                     "c5": (1, 120), "f6": (1, 84), "pre_logits": (1, 84)}
    assert logits == (1, 10)


def test_lenet5_shapes_and_params():
    feats, logits = forward_shapes("lenet5")
    assert feats == {"c1": (1, 28, 28, 6), "s2": (1, 14, 14, 6), "c3": (1, 10, 10, 16), "s4": (1, 5, 5, 16),
                     "c5": (1, 120), "f6": (1, 84), "pre_logits": (1, 84)}
    sizes = [feats[k][1] for k in ("c1", "s2", "c3", "s4", "c5", "f6")] + [logits[1]]
    assert sizes == [28, 14, 10, 5, 120, 84, 10]
    params = abstract_variables("lenet5")["params"]
    assert {k: count(v) for k, v in params.items()} == {"conv1": 156, "conv2": 2_416, "fc1": 48_120,
                                                        "fc2": 10_164, "fc3": 850}
    assert count(params) == 61_706 == zoo.model_info("lenet5").params == reference()["models"]["lenet5"]["params"]


def test_lenet5_norm_option_replaces_conv_bias():
    params = abstract_variables("lenet5", norm="batch")["params"]
    assert set(params["conv1"]) == {"kernel"} and set(params["bn1"]) == {"scale", "bias"}


@pytest.mark.parametrize("name, size", [("lenet5", 32), ("lenet5_classic", 28)])
def test_lenet_input_size_is_exact(name, size):
    with pytest.raises(ValueError, match=r"expected \(B, H, W, 1\)"):
        abstract_variables(name, (size, size, 1))


def test_lenet5_classic_has_no_norm_option():
    with pytest.raises(ValueError, match="norm.*allowed"):
        zoo.create("lenet5_classic", norm="batch")
