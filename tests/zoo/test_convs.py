"""Convolution implementations (zoo.convs): the 'cpu' and 'cpu_matmul' rewrites equal XLA's convolution in values and
both gradients, and the choice is a visible model field, not a global switch or a backend query."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import images, random_variables
from zoo import convs


# The 'cpu' implementation's rewrites against XLA's own convolution: values and both
# gradients (what the train step differentiates), for the cases the zoo hits.
@pytest.mark.parametrize("case", [
    # (x shape, kernel shape HWIO, groups, stride, padding): depthwise 3x3 / 5x5, stride 1 / 2, odd sizes
    ((2, 7, 7, 8), (3, 3, 1, 8), 8, 1, 1),
    ((2, 9, 8, 6), (3, 3, 1, 6), 6, 2, 1),
    ((2, 10, 10, 4), (5, 5, 1, 4), 4, 2, 2),
    ((2, 2, 2, 5), (3, 3, 1, 5), 5, 1, 1),       # depthwise on a map smaller than its kernel
    # maps smaller than the kernel (ResNet layer3/4 at 32x32): im2col + matmul
    ((2, 2, 2, 8), (3, 3, 8, 16), 1, 1, 1),
    ((2, 2, 2, 8), (3, 3, 8, 16), 1, 2, 1),
    ((2, 1, 1, 8), (3, 3, 8, 4), 1, 1, 1),       # only the centre tap reads the 1x1 map
    ((2, 4, 4, 8), (3, 3, 8, 16), 1, 2, 1),      # output 2x2 (ResNet layer3_0/conv1 at 32x32)
    # stride-1 1x1 (ResNet-50 bottlenecks, MobileNet expansions): XLA's conv forward, matmul gradients
    ((2, 5, 6, 8), (1, 1, 8, 12), 1, 1, 0),
    # strided 1x1 (ResNet's downsampling shortcuts): XLA's conv on a materialised input under grad
    ((2, 9, 8, 8), (1, 1, 8, 12), 1, 2, 0),
    # grouped, not depthwise (ResNeXt's 3x3, ShuffleNet v1's 1x1, AlexNet 2012's towers): chunks of groups
    ((2, 6, 6, 16), (3, 3, 4, 16), 4, 1, 1),     # 4 channels per group: one chunk of 4 groups
    ((2, 7, 7, 32), (3, 3, 4, 32), 8, 2, 1),     # two chunks of 4 groups, stride 2
    ((2, 6, 5, 8), (3, 3, 2, 12), 4, 1, 1),      # 2 in, 3 out per group
    ((2, 5, 5, 24), (1, 1, 8, 24), 3, 1, 0),     # grouped 1x1: three single-group chunks
    ((2, 7, 7, 32), (5, 5, 16, 32), 2, 1, 2),    # two towers of 16 channels
    ((2, 3, 3, 16), (3, 3, 4, 16), 4, 2, 1),     # grouped onto a map smaller than the kernel
    # 'cpu_matmul' (search groups on CPU): every ungrouped conv as im2col + matmul (LeNet's 5x5, a strided 3x3)
    ("cpu_matmul", (2, 12, 12, 3), (5, 5, 3, 4), 1, 1, 2),
    ("cpu_matmul", (2, 9, 9, 4), (3, 3, 4, 6), 1, 2, 1),
    ("cpu_matmul", (2, 6, 6, 16), (3, 3, 4, 16), 4, 1, 1),
], ids=["dw3", "dw3_s2", "dw5_s2", "dw3_2x2", "small_2x2", "small_2x2_s2", "small_1x1", "out_2x2_s2", "pointwise",
        "strided_1x1", "grouped3", "grouped3_s2", "grouped_2to3", "grouped_1x1", "grouped5_towers", "grouped_2x2_s2",
        "matmul5", "matmul3_s2", "matmul_grouped3"])
def test_cpu_conv_rewrites_match_lax(case):
    impl, case = (case[0], case[1:]) if isinstance(case[0], str) else ("cpu", case)
    x_shape, k_shape, groups, stride, pad = case
    rng = np.random.default_rng(0)  # numpy: jax.random's first call compiles for seconds here
    x = rng.standard_normal(x_shape, dtype=np.float32)
    k = rng.standard_normal(k_shape, dtype=np.float32)
    args = ((stride, stride), ((pad, pad), (pad, pad)))
    dn = ("NHWC", "HWIO", "NHWC")

    def ours(x, k):
        return convs.CONV_IMPLS[impl](x, k, *args, dimension_numbers=dn, feature_group_count=groups)

    def ref(x, k):
        return jax.lax.conv_general_dilated(x, k, *args, dimension_numbers=dn, feature_group_count=groups)

    g = rng.standard_normal(jax.eval_shape(ref, x, k).shape, dtype=np.float32)

    @jax.jit
    def value_and_grads(x, k):  # one compilation each: eager op-by-op dispatch is far slower here
        out = {}
        for name, f in (("ours", ours), ("ref", ref)):
            y, vjp = jax.vjp(f, x, k)
            out[name] = (y, *vjp(g))
        return out

    out = value_and_grads(x, k)
    for a, b in zip(out["ours"], out["ref"]):  # y, dx, dk
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    jaxpr = str(jax.make_jaxpr(ours)(x, k))   # the rewrite is really taken
    if groups > 1 and k_shape[2] > 1:          # grouped, not depthwise: only ungrouped convolutions left
        assert [int(n) for n in re.findall(r"feature_group_count=(\d+)", jaxpr)] == [1] * (jaxpr.count("conv_general_dilated["))
    else:
        assert ("custom_vjp_call" in jaxpr) if k_shape[:2] == (1, 1) and impl == "cpu" else ("conv_general_dilated" not in jaxpr)


def test_block_diagonal_kernel_holds_each_groups_weights_in_its_block():
    rng = np.random.default_rng(1)
    k = rng.standard_normal((3, 3, 2, 12), dtype=np.float32)     # 4 groups: 2 in, 3 out each
    dense = np.asarray(convs.block_diagonal(k, 4))
    assert dense.shape == (3, 3, 8, 12)
    ref = np.zeros((3, 3, 8, 12), np.float32)
    for g in range(4):
        ref[:, :, 2 * g:2 * g + 2, 3 * g:3 * g + 3] = k[:, :, :, 3 * g:3 * g + 3]
    np.testing.assert_array_equal(dense, ref)


@pytest.mark.parametrize("in_per_group, chunks", [(4, 8), (8, 16), (16, 32), (32, 32)])
def test_resnext_grouped_convs_run_as_chunks_of_about_16_input_channels(in_per_group, chunks):
    """ResNeXt's 32 groups (4, 8, 16, 32 input channels each in its four stages): groups narrower than
    GROUP_CHUNK_CHANNELS share a chunk, wider ones are a chunk each."""
    x = np.zeros((1, 4, 4, 32 * in_per_group), np.float32)
    k = np.zeros((3, 3, in_per_group, 32 * in_per_group), np.float32)
    jaxpr = str(jax.make_jaxpr(lambda x, k: convs.cpu_conv_general_dilated(
        x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=32))(x, k))
    assert jaxpr.count("conv_general_dilated[") == chunks and "feature_group_count=32" not in jaxpr


def test_strided_1x1_input_is_materialised_for_the_gradient_only():
    """XLA:CPU fuses the producers of a strided 1x1 conv's input (a ResNet shortcut: the residual
    chain) into the batch-minor transpose its kernel gradient reads, recomputing them; under
    jax.grad the input is a conditional's result, which XLA cannot fuse through. Evaluation is
    the plain program."""
    x, k = np.ones((2, 8, 8, 6), np.float32), np.ones((1, 1, 6, 10), np.float32)

    def f(x, k):
        y = convs.cpu_conv_general_dilated(np.float32(1.5) * x + 1.0, k, (2, 2), ((0, 0), (0, 0)),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return (y ** 2).sum()

    def conditionals(fn):
        return len(re.findall(r" conditional\(", jax.jit(fn).lower(x, k).compile().as_text()))

    assert conditionals(jax.grad(f, (0, 1))) == 1
    assert conditionals(f) == 0
    np.testing.assert_allclose(convs.materialised(np.array([np.nan, 1.0, -3.5], np.float32)), [np.nan, 1.0, -3.5])


def test_depthwise_kernel_gradient_copies_its_taps_in_the_backward_pass_only():
    """The depthwise kernel gradient reduces each tap's slice of the input in a YNNPACK reduction,
    which reads a copy of the slice. Left to autodiff, XLA:CPU formed the kh*kw copies of every layer
    in the forward pass (recomputing the input's producers in each) and held them all until the
    backward pass. Under jax.grad the input is now materialised once, by a conditional that reads the
    incoming gradient, so the copies are formed in the backward pass; evaluation has no conditional.
    Eight stacked 3x3 depthwise layers: autodiff's temporary buffer holds at least 8 x 9 inputs, ours less."""
    layers, x, k = 8, np.ones((2, 32, 32, 16), np.float32), np.ones((3, 3, 1, 16), np.float32)

    def stack(conv):
        def loss(x, k):
            h = x
            for _ in range(layers):
                h = jax.numpy.clip(np.float32(1.5) * h + 1.0, 0.0, 6.0)                # a BatchNorm + ReLU6 stand-in
                h = conv(h, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                         feature_group_count=16)
            return (h ** 2).sum()
        return loss

    def compiled(fn):
        return jax.jit(fn).lower(x, k).compile()

    ours = stack(convs.cpu_conv_general_dilated)
    autodiff = stack(lambda h, k, strides, padding, **_: convs.depthwise_shifted_sum(h, k, strides, padding))
    grads = {name: compiled(jax.grad(fn, (0, 1))) for name, fn in (("ours", ours), ("autodiff", autodiff))}
    assert len(re.findall(r" conditional\(", grads["ours"].as_text())) == layers
    assert " conditional(" not in compiled(ours).as_text()
    temp = {name: g.memory_analysis().temp_size_in_bytes for name, g in grads.items()}
    assert temp["autodiff"] >= layers * 9 * x.nbytes > temp["ours"], temp


def test_convolution_outputs_pass_the_library_fusion_boundary_unchanged():
    """Evaluated, the boundary is ``clamp(-inf, y, inf)``: every float32 value comes back bit for bit
    (NaN, infinities, -0.0, the largest finite); under jax.grad it is not in the program at all and
    the gradient passes through."""
    y = np.array([np.nan, np.inf, -np.inf, -0.0, 1.5, -3.4028235e38, 3.4028235e38], np.float32)
    for fn in (convs.outside_library_fusions, jax.jit(convs.outside_library_fusions)):
        assert np.asarray(fn(y)).tobytes() == y.tobytes()
    weights = np.arange(3, dtype=np.float32)
    loss = lambda v: (convs.outside_library_fusions(v) * weights).sum()  # noqa: E731
    np.testing.assert_array_equal(jax.grad(loss)(np.ones(3, np.float32)), weights)
    assert " clamp(" in jax.jit(convs.outside_library_fusions).lower(y).compile().as_text()
    assert " clamp(" not in jax.jit(jax.grad(loss)).lower(np.ones(3, np.float32)).compile().as_text()


@pytest.mark.parametrize("case", [
    # (x shape, window, stride, padding, ceil_mode) as the zoo's max pools use them
    ((2, 13, 13, 4), 3, 2, 0, False),      # AlexNet
    ((2, 12, 11, 4), 3, 2, 1, False),      # ResNet / DenseNet / ShuffleNet stem (odd width)
    ((2, 8, 8, 4), 2, 2, 0, False),        # VGG, LeNet: windows that do not overlap
    ((2, 14, 14, 4), 3, 2, 0, True),       # GoogLeNet / SqueezeNet: ceil mode pads one side only
    ((2, 7, 7, 4), 3, 1, 1, True),         # GoogLeNet's branch pool, stride 1
], ids=["alexnet", "stem_p1", "vgg_2x2", "ceil", "branch_s1"])
def test_cpu_max_pool_gradient_matches_select_and_scatter(case):
    """The shifted-slice gradient sends each output's gradient where XLA's select-and-scatter does:
    to the first maximum of its window, also on ties (ReLU outputs: windows of zeros)."""
    shape, window, stride, pad, ceil = case
    rng = np.random.default_rng(0)
    x = np.maximum(np.round(rng.standard_normal(shape) * 2), 0).astype(np.float32)  # many ties, at 0 and above
    pools = {impl: (lambda x, impl=impl: zoo.layers.max_pool(x, window, stride, pad, ceil, impl=convs.MAX_POOLS[impl]))
             for impl in ("lax", "cpu")}
    g = rng.standard_normal(jax.eval_shape(pools["lax"], x).shape).astype(np.float32)
    results = {}
    for impl, f in pools.items():
        y, vjp = jax.vjp(f, x)
        results[impl] = (y, *vjp(g))
    for a, b in zip(results["cpu"], results["lax"]):  # y, dx
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert float(np.abs(results["lax"][1]).sum()) > 0
    model_ops = zoo.create("resnet18", conv_impl="cpu").ops(train=True)
    assert model_ops.max_pool_impl is convs.max_pool_shifted_grad  # what the 'cpu' models use


@pytest.mark.parametrize("window, stride, padding", [((3, 3), (2, 2), ((1, 1), (1, 1))),   # ResNet's stem
                                                      ((2, 2), (2, 2), ((0, 0), (0, 0))),   # VGG
                                                      ((3, 3), (2, 2), ((0, 1), (0, 1))),   # ceil mode
                                                      ((3, 3), (1, 1), ((1, 1), (1, 1))),   # GoogLeNet's branch
                                                      ((3, 2), (1, 2), ((1, 0), (0, 1)))])  # unequal sides
def test_the_separable_max_pool_gives_xla_reduce_windows_maxima_exactly(window, stride, padding):
    """Rows then columns: the same maxima as ``flax.linen.max_pool``'s one 2-D window, to the bit,
    with infinities and a NaN in the input (NaN propagates through both)."""
    x = np.random.default_rng(0).standard_normal((2, 11, 13, 3)).astype(np.float32)
    x[0, 2, 3, 0], x[1, 5, 5, 1], x[0, 7, 1, 2], x[1, 0, 0, 0] = np.inf, -np.inf, np.nan, -np.inf
    want = np.asarray(nn.max_pool(jnp.asarray(x), window, stride, padding))
    got = np.asarray(jax.jit(convs.max_pool_separable, static_argnums=(1, 2, 3))(x, window, stride, padding))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(want).sum() >= 1 and np.isposinf(want).sum() >= 1


def test_conv_impl_is_a_field_chosen_by_whoever_knows_the_devices():
    assert convs.conv_impl_for("cpu") == "cpu"
    assert convs.conv_impl_for("gpu") == convs.conv_impl_for("tpu") == "lax"
    assert zoo.create("mobilenet_v2").conv_impl == "lax"  # models are backend-neutral by default
    with pytest.raises(ValueError, match=r"conv_impl='fast'.*allowed.*'lax', 'cpu'"):
        zoo.create("mobilenet_v2", conv_impl="fast")


@pytest.mark.integration
def test_both_implementations_give_the_same_model_outputs_and_only_lax_traces_depthwise_convs():
    shape = (32, 32, 3)
    lax_model = zoo.create("mobilenet_v2", num_classes=10)
    cpu_model = zoo.create("mobilenet_v2", num_classes=10, conv_impl="cpu")
    variables = random_variables(lax_model, shape)
    x = images((2, *shape))
    out = jax.jit(lambda v, x: (lax_model.apply(v, x), cpu_model.apply(v, x)))(variables, x)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-4, atol=1e-4 * float(np.abs(out[0]).max()))

    def grouped_convs(m):
        jaxpr = str(jax.make_jaxpr(lambda v, x: m.apply(v, x))(variables, x))
        return [g for g in re.findall(r"feature_group_count=(\d+)", jaxpr) if int(g) > 1]

    assert len(grouped_convs(lax_model)) == 17 and grouped_convs(cpu_model) == []  # 17 depthwise convs
