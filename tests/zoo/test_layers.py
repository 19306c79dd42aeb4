"""zoo.layers: the lecture notes' worked examples (../shared/reference.md), pooling and flatten as PyTorch
computes them, and the argument checks every family uses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import layers

IMAGE = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
KERNEL = [[0, 1, 2], [2, 2, 0], [0, 1, 2]]


def test_conv_stride1_no_padding():
    np.testing.assert_array_equal(layers.conv2d(IMAGE, KERNEL), [[12, 12, 17], [10, 17, 19], [9, 6, 14]])


def test_conv_stride1_padding1_first_rows():
    out = layers.conv2d(IMAGE, KERNEL, padding=1)
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out[:3], [[6, 14, 17, 11, 3], [14, 12, 12, 17, 11], [8, 10, 17, 19, 13]])


def test_average_pool_3x3_stride1():
    out = layers.pool2d(IMAGE, 3, 1, kind="avg")
    np.testing.assert_allclose(out, [[1.7, 1.7, 1.7], [1.0, 1.2, 1.8], [1.1, 0.8, 1.3]], atol=0.05)


def test_vertical_edge_detector():
    image = [[10, 10, 10, 0, 0, 0]] * 6
    out = layers.conv2d(image, [[1, 0, -1]] * 3)
    np.testing.assert_array_equal(out, [[0, 30, 30, 0]] * 4)


def test_sobel_gives_400():
    out = layers.conv2d([[100, 100, 200, 200]] * 4, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(out, np.full((2, 2), 400))


def test_max_pool_2x2_stride2():
    x = [[12, 20, 30, 0], [8, 12, 2, 0], [34, 70, 37, 4], [112, 100, 25, 12]]
    np.testing.assert_array_equal(layers.pool2d(x, 2, 2, kind="max"), [[20, 30], [112, 37]])


@pytest.mark.parametrize("n, f, p, s, out", [(7, 3, 1, 2, 4), (227, 11, 0, 4, 55), (32, 5, 0, 1, 28), (28, 5, 2, 1, 28)])
def test_output_size(n, f, p, s, out):
    assert layers.conv_output_size(n, f, p, s) == out


@pytest.mark.parametrize("cin, cout, k, params", [(3, 10, 3, 280), (3, 6, 5, 456), (3, 96, 11, 34_944)])
def test_conv_params(cin, cout, k, params):
    assert layers.conv_params(cin, cout, k) == params


def test_alexnet_conv1_worked_example_through_ops():
    """227x227x3, 96 filters 11x11 stride 4 -> 55x55x96 with 34,944 parameters, via Ops.conv."""
    import flax.linen as nn

    class C1(nn.Module):
        @nn.compact
        def __call__(self, x):
            return layers.Ops().conv(x, 96, 11, strides=4, padding=0, use_bias=True, name="conv1")

    v = jax.eval_shape(lambda: C1().init(jax.random.key(0), jnp.zeros((1, 227, 227, 3))))
    out = jax.eval_shape(lambda v: C1().apply(v, jnp.zeros((1, 227, 227, 3))), v)
    assert out.shape == (1, 55, 55, 96)
    assert sum(a.size for a in jax.tree.leaves(v)) == 34_944


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="p=-1"):
        layers.conv_output_size(5, 3, -1)
    with pytest.raises(ValueError, match="does not fit"):
        layers.conv_output_size(2, 5)
    with pytest.raises(ValueError, match="groups=4"):
        layers.conv_params(6, 8, 3, groups=4)
    with pytest.raises(ValueError, match="kind"):
        layers.pool2d(IMAGE, 2, 2, kind="median")


def test_adaptive_avg_pool_matches_torch_bins():
    x = jnp.arange(5.0).reshape(1, 5, 1, 1)
    # PyTorch AdaptiveAvgPool1d(3) on [0..4]: bins [0,2), [1,4), [3,5) -> 0.5, 2, 3.5
    np.testing.assert_allclose(layers.adaptive_avg_pool(jnp.tile(x, (1, 1, 5, 1)), (3, 1))[0, :, 0, 0], [0.5, 2, 3.5])


def test_ceil_mode_max_pool():
    # PyTorch MaxPool2d(3, 2, ceil_mode=True) on 6 -> 3 (floor would give 2); on 5 -> 2.
    assert layers.max_pool(jnp.zeros((1, 6, 6, 1)), 3, 2, ceil_mode=True).shape[1] == 3
    assert layers.max_pool(jnp.zeros((1, 5, 5, 1)), 3, 2, ceil_mode=True).shape[1] == 2


def test_flatten_is_pytorchs_channel_major_order():
    x_nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(layers.flatten_nchw(jnp.asarray(x_nchw.transpose(0, 2, 3, 1))),
                                  x_nchw.reshape(2, -1))


def test_a_familys_forward_is_the_body_of_call():
    """ZooModel.__call__ runs ``forward`` unwrapped: no Flax method call of its own (interceptors,
    capture_intermediates) and no name scope in the traced program (analyses name pools by scope)."""
    import flax.linen as nn
    import zoo

    model, seen = zoo.create("lenet5"), []

    def interceptor(next_fun, args, kwargs, context):
        seen.append(context.method_name)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jaxpr = jax.make_jaxpr(lambda x: model.init(jax.random.key(0), x))(jnp.zeros((1, 28, 28, 1)))
    assert "__call__" in seen and "forward" not in seen
    stacks = [str(e.source_info.name_stack) for e in jaxpr.jaxpr.eqns if e.primitive.name == "reduce_window_max"]
    assert len(stacks) == 2 and not any("forward" in s for s in stacks)


# ----------------------------------------------------------------------------- refusals, as torch's
# torch 2.13 messages quoted (F.conv2d / F.max_pool2d / F.avg_pool2d, /work/torch-ref, 2026-12-02); before the
# fix each of these returned an array (-inf rows, an empty array, a cropped input) or a multi-frame traceback.

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("window, stride, padding", [(3, 1, 3), (3, 1, 2), (2, 2, 2)])
def test_pool_padding_at_most_half_the_window(kind, window, stride, padding):
    # torch: "pad should be at most half of effective kernel size, but got pad=2, kernel_size=3"
    with pytest.raises(ValueError, match=rf"^padding={padding}: at most window // 2 = {window // 2} "):
        layers.pool2d(np.ones((5, 5)), window, stride, kind=kind, padding=padding)
    pool = layers.max_pool if kind == "max" else layers.avg_pool
    with pytest.raises(ValueError, match=rf"^padding={padding}: "):
        pool(jnp.ones((1, 5, 5, 1)), window, stride, padding)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_window_larger_than_the_input(kind):
    # torch: "Given input size: (1x5x5). Calculated output size: (1x-1x-1). Output size is too small"
    with pytest.raises(ValueError, match=r"^window=7 does not fit the 5x5 input with padding=0$"):
        layers.pool2d(np.ones((5, 5)), 7, 1, kind=kind)
    pool = layers.max_pool if kind == "max" else layers.avg_pool
    with pytest.raises(ValueError, match=r"^window=7 does not fit the 5x6 input"):
        pool(jnp.ones((1, 5, 6, 1)), 7, 1)
    assert pool(jnp.ones((1, 5, 5, 1)), 5, 1).shape == (1, 1, 1, 1)  # torch: 1x1


@pytest.mark.parametrize("window, stride, message", [
    (0, 1, r"^window=0: must be an integer >= 1$"),  # torch: kernel size should be greater than zero
    (3, 0, r"^stride=0: must be an integer >= 1$"),  # torch: stride should not be zero
    (2.0, 2, r"^window=2\.0: "), (2, None, r"^stride=None: ")])
def test_pool_window_and_stride_are_positive_integers(window, stride, message):
    with pytest.raises(ValueError, match=message):
        layers.pool2d(IMAGE, window, stride)
    with pytest.raises(ValueError, match=message):
        layers.max_pool(jnp.ones((1, 5, 5, 1)), window, stride)


@pytest.mark.parametrize("kernel, kw, message", [
    (np.ones((5, 5)), {}, r"^kernel 5x5 does not fit the 3x3 image with padding=0$"),  # torch: Kernel size can't be greater
    (np.ones((3, 3)), {"padding": -1}, r"^padding=-1: must be an integer >= 0$"),      # torch: negative padding is not supported
    (np.ones((3, 3)), {"padding": 1.5}, r"^padding=1\.5: must be an integer >= 0$"),   # torch: TypeError (padding=float)
    (np.ones((3, 3)), {"stride": 0}, r"^stride=0: must be an integer >= 1$"),          # torch: non-positive stride
    (np.ones((3, 3, 1)), {}, r"^kernel: must be a 2-D array \(kh, kw\), got shape \(3, 3, 1\)$"),
])
def test_conv2d_refusals(kernel, kw, message):
    image = np.ones((3, 3)) if kernel.shape[0] == 5 else np.ones((5, 5))
    with pytest.raises(ValueError, match=message):
        layers.conv2d(image, kernel, **kw)


@pytest.mark.parametrize("image", [np.ones((5, 5, 3)), np.ones(5), np.ones((0, 5))])
def test_conv2d_and_pool2d_take_one_2d_channel(image):
    # the docstrings' contract: a single-channel (H, W) image (torch: "weight should have at least three dimensions")
    with pytest.raises(ValueError, match=r"^image: must be a 2-D array \(H, W\) of one channel, got shape "):
        layers.conv2d(image, np.ones((1, 1)))
    with pytest.raises(ValueError, match=r"^image: must be a 2-D array \(H, W\) of one channel"):
        layers.pool2d(image, 1, 1)


def test_valid_edge_cases_still_compute():
    np.testing.assert_array_equal(layers.conv2d(np.ones((3, 3)), np.ones((3, 3)), padding=1)[1, 1], 9)
    # padding = window / 2 is allowed (torch: MaxPool2d(2, 1, padding=1) on 5x5 -> 6x6)
    assert layers.pool2d(np.ones((5, 5)), 2, 1, padding=1).shape == (6, 6)
    assert layers.pool2d(np.ones((5, 5)), 2, 1, kind="max", padding=1).min() == 1.0
