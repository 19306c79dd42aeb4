"""ResNet against He et al. 2016 (Table 1 depths, the CIFAR networks of sec. 4.2 with option-A
shortcuts) and torchvision (v1.5 bottleneck stride, projection shortcuts, module names, ResNeXt and
Wide ResNet widths), the small-input stem, and the option checks. Published figures come from
tests/fixtures/reference.json. Shapes and counts use jax.eval_shape; the compiled passes run on
inputs of at most 32x32."""
import functools

import flax.linen as nn
import numpy as np
import pytest

import zoo
from helpers import inner_loop_sample, abstract_variables, count, flat, forward_shapes, images, layer_modules, random_variables, \
    reference, run_once
from zoo.resnet import CifarResNet, ResNet

# Table 1 of the paper: block kind and blocks per stage (conv2_x ... conv5_x).
TABLE1 = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
# Convs of a block (kernel sizes): basic 3x3, 3x3; bottleneck 1x1, 3x3, 1x1 (expansion 4).
BLOCK_KERNELS = {"basic": {"conv1": 3, "conv2": 3}, "bottleneck": {"conv1": 1, "conv2": 3, "conv3": 1}}
EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_PLANES = (64, 128, 256, 512)


def _blocks(params, stage):
    """Block names of stage ``stage`` (1..4) in order: ``layer{stage}_0``, ``layer{stage}_1``, ..."""
    names = [k for k in params if k.startswith(f"layer{stage}_")]
    return sorted(names, key=lambda k: int(k.split("_")[1]))


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_blocks_per_stage_are_table1(name):
    kind, repeats = TABLE1[name]
    params = abstract_variables(name)["params"]
    assert [len(_blocks(params, s)) for s in (1, 2, 3, 4)] == list(repeats)
    for stage, planes in enumerate(STAGE_PLANES, start=1):
        for block in _blocks(params, stage):
            kernels = {c: params[block][c]["kernel"].shape[0] for c in params[block] if c.startswith("conv")}
            assert kernels == BLOCK_KERNELS[kind], block
            last = "conv3" if kind == "bottleneck" else "conv2"
            assert params[block][last]["kernel"].shape[-1] == planes * EXPANSION[kind], block
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert params["fc"]["kernel"].shape == (512 * EXPANSION[kind], 1000)
    assert count(params) == reference()["models"][name]["params"]


@pytest.mark.parametrize("name, channels", [("resnet18", 512), ("resnet50", 2048)])
def test_stage_resolutions_at_224(name, channels):
    feats, logits = forward_shapes(name)
    c = channels // 8
    assert feats == {"stem": (1, 56, 56, 64), "layer1": (1, 56, 56, c), "layer2": (1, 28, 28, 2 * c),
                     "layer3": (1, 14, 14, 4 * c), "layer4": (1, 7, 7, channels), "pre_logits": (1, channels)}
    assert logits == (1, 1000)


def test_bottleneck_stride_is_on_the_3x3_conv():
    """v1.5 (torchvision): the first block of stages 2-4 strides in conv2 (3x3), not in conv1 (1x1) as the
    paper's v1; the projection shortcut strides too."""
    rows = {r.path: r.output_shape for r in zoo.layer_table(zoo.create("resnet50"), (224, 224, 3))}
    for stage, size in ((2, 56), (3, 28), (4, 14)):
        block = f"layer{stage}_0"
        assert rows[f"{block}/conv1"][1:3] == (size, size), block  # 1x1, stride 1
        assert rows[f"{block}/conv2"][1:3] == (size // 2, size // 2), block  # 3x3, stride 2
        assert rows[f"{block}/conv3"][1:3] == (size // 2, size // 2), block
        assert rows[f"{block}/downsample_0"][1:3] == (size // 2, size // 2), block
    assert rows["layer1_0/conv2"][1:3] == (56, 56)  # stage 1 follows the max-pool: no stride
    mods = layer_modules("resnet50")
    assert mods["layer2_0/conv2"].strides == (2, 2) and mods["layer2_0/conv1"].strides == (1, 1)


@pytest.mark.parametrize("name", inner_loop_sample(sorted(TABLE1) + ["resnext50_32x4d", "wide_resnet50_2"], {"resnet18", "resnet50"}))
def test_projection_shortcuts_where_torchvision_has_them(name):
    """torchvision's _make_layer adds ``downsample`` (1x1 conv + BN) to the first block of a stage when
    it strides or changes the channel count: stages 2-4 always, stage 1 only for bottlenecks (64 -> 256)."""
    v = abstract_variables(name)
    params, stats = v["params"], v["batch_stats"]
    bottleneck = "conv3" in params["layer1_0"]
    expected = {"layer2_0", "layer3_0", "layer4_0"} | ({"layer1_0"} if bottleneck else set())
    assert {k for k, p in params.items() if "downsample_0" in p} == expected
    for block in expected:
        c_in = params[block]["conv1"]["kernel"].shape[2]
        c_out = params[block]["conv3" if bottleneck else "conv2"]["kernel"].shape[-1]
        assert params[block]["downsample_0"]["kernel"].shape == (1, 1, c_in, c_out), block
        assert set(params[block]["downsample_0"]) == {"kernel"}  # no bias: BN follows
        assert params[block]["downsample_1"]["scale"].shape == (c_out,)
        assert set(stats[block]["downsample_1"]) == {"mean", "var"}


@pytest.mark.parametrize("name, tensors", [("resnet18", 102), ("resnet50", 267)])
def test_torchvision_names_and_tensor_count(name, tensors):
    """torchvision's state_dict keys with '.' -> '_' for indices and '/' between modules; its tensor count
    without num_batches_tracked (122 / 320 entries with them)."""
    v = abstract_variables(name)
    params, stats = flat(v["params"]), flat(v["batch_stats"])
    assert len(params) + len(stats) == tensors
    for key in ("conv1/kernel", "bn1/scale", "bn1/bias", "layer1_0/conv1/kernel", "layer1_0/bn2/scale",
                "layer2_0/downsample_0/kernel", "layer2_0/downsample_1/bias", "layer4_1/conv2/kernel",
                "fc/kernel", "fc/bias"):
        assert key in params, key
    assert {"bn1/mean", "bn1/var", "layer3_0/downsample_1/mean"} <= set(stats)


@pytest.mark.parametrize("name, widths, groups", [
    # torchvision: width = int(planes * width_per_group / 64) * groups, conv2 grouped.
    ("resnext50_32x4d", (128, 256, 512, 1024), 32),
    ("wide_resnet50_2", (128, 256, 512, 1024), 1),
    ("resnet50", (64, 128, 256, 512), 1),
])
def test_resnext_and_wide_widths(name, widths, groups):
    params = abstract_variables(name)["params"]
    mods = layer_modules(name)
    for stage, (width, planes) in enumerate(zip(widths, STAGE_PLANES), start=1):
        for block in _blocks(params, stage):
            p = params[block]
            assert p["conv1"]["kernel"].shape[-1] == width, block
            assert p["conv2"]["kernel"].shape == (3, 3, width // groups, width), block
            assert p["conv3"]["kernel"].shape == (1, 1, width, 4 * planes), block
            assert mods[f"{block}/conv2"].feature_group_count == groups, block
            assert mods[f"{block}/conv1"].feature_group_count == mods[f"{block}/conv3"].feature_group_count == 1


# ---------------------------------------------------------------------- small_input

@functools.lru_cache(maxsize=None)
def _small_input_run():
    """resnet18 with ``small_input=True``: features and logits of 8x8 and 32x32 images (one program)."""
    model = zoo.create("resnet18", small_input=True, num_classes=10)
    v = random_variables(model, (32, 32, 3))
    small, large = images((2, 8, 8, 3)), images((2, 32, 32, 3), seed=1)

    def run(v, small, large):
        return [model.apply(v, x, mutable=["features"]) for x in (small, large)]

    return v, run_once(run, v, small, large)


def test_small_input_stem_is_3x3_stride_1_without_max_pool():
    v, _ = _small_input_run()
    assert v["params"]["conv1"]["kernel"].shape == (3, 3, 3, 64)
    assert count(v["params"]) == reference()["models"]["resnet18"]["params"] - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64 \
        - 1000 * 513 + 10 * 513
    assert zoo.layer_table(zoo.create("resnet18", small_input=True), (32, 32, 3))[0].output_shape == (1, 32, 32, 64)


@pytest.mark.parametrize("which, size", [(0, 8), (1, 32)])
def test_small_input_forward(which, size):
    _, runs = _small_input_run()
    logits, state = runs[which]
    feats = {k: v.shape for k, v in state["features"].items()}
    assert feats == {"stem": (2, size, size, 64), "layer1": (2, size, size, 64),
                     "layer2": (2, size // 2, size // 2, 128), "layer3": (2, size // 4, size // 4, 256),
                     "layer4": (2, size // 8, size // 8, 512), "pre_logits": (2, 512)}
    assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()


def test_small_input_sizes():
    assert zoo.create("resnet18", small_input=True).input_spec().min_size == 8
    with pytest.raises(ValueError, match=r"too small.*expected \(B, H, W, 3\) with H, W >=8"):
        abstract_variables("resnet18", (7, 7, 3), small_input=True)
    assert forward_shapes("resnet18", (32, 32, 3))[0]["stem"] == (1, 8, 8, 64)  # default stem: /4


# ---------------------------------------------------------------------- CIFAR ResNets (sec. 4.2)

@pytest.mark.parametrize("name, depth", inner_loop_sample([("resnet20", 20), ("resnet32", 32), ("resnet44", 44),
                                                           ("resnet56", 56), ("resnet110", 110)], {("resnet20", 20)}))
def test_cifar_resnets_are_6n_plus_2(name, depth):
    params = abstract_variables(name)["params"]
    n = (depth - 2) // 6
    assert [len(_blocks(params, s)) for s in (1, 2, 3)] == [n, n, n]
    convs = [k for k, p in flat(params).items() if k.endswith("kernel") and p.ndim == 4]
    assert len(convs) + 1 == depth  # 6n + 1 convs and the fc: no projection convs (option A)
    assert not any("downsample" in k for k in convs)
    assert params["fc"]["kernel"].shape == (64, 10)
    feats, _ = forward_shapes(name)
    assert feats == {"stem": (1, 32, 32, 16), "layer1": (1, 32, 32, 16), "layer2": (1, 16, 16, 32),
                     "layer3": (1, 8, 8, 64), "pre_logits": (1, 64)}


def test_option_a_shortcut_is_subsampled_zero_padded_identity():
    """With the conv weights of the downsampling blocks zeroed (BatchNorm at scale 1, bias 0), their
    output is relu of the identity shortcut: the input subsampled by 2 and zero-padded to twice the
    channels, the new channels split evenly before and after (as the CIFAR option-A implementations)."""
    model = zoo.create("resnet20")
    v = random_variables(model, (32, 32, 3))
    for block in ("layer2_0", "layer3_0"):
        for conv in ("conv1", "conv2"):
            v["params"][block][conv]["kernel"] = np.zeros_like(v["params"][block][conv]["kernel"])
    x = images((2, 32, 32, 3))
    feats = run_once(lambda v, x: zoo.features(model, v, x, layers=["layer1", "layer2_0", "layer2", "layer3_0"]), v, x)
    for before, block, c in (("layer1", "layer2_0", 16), ("layer2", "layer3_0", 32)):
        inp = np.asarray(feats[before])  # (2, H, W, c)
        expected = np.maximum(np.pad(inp[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (c // 2, c // 2))), 0)
        np.testing.assert_array_equal(np.asarray(feats[block]), expected)
        assert np.abs(inp).max() > 0


# ---------------------------------------------------------------------- options

@pytest.mark.parametrize("override, pattern", [
    (dict(layers=(2, 2, 2)), r"^layers=\(2, 2, 2\): must list 4 integers >= 1$"),
    (dict(layers=(2, 0, 2, 2)), r"^layers=\(2, 0, 2, 2\): must list 4"),
    (dict(block="bottle"), r"^block='bottle': allowed values are \('basic', 'bottleneck'\)$"),
    (dict(groups=0), r"^groups=0: must be an integer >= 1$"),
    (dict(width_per_group=-64), r"^width_per_group=-64"),
])
def test_bad_options_name_the_argument(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        ResNet(**override)


@pytest.mark.parametrize("depth", [18, 21, 6, "20"])
def test_cifar_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"^depth=.*: must be 6n \+ 2"):
        CifarResNet(depth=depth)


@pytest.mark.parametrize("name, override, pattern", [
    ("resnet50", dict(layers=(2, 2, 2, 2)), r"^resnet50 fixes layers=\(3, 4, 6, 3\); build zoo.resnet.ResNet"),
    ("resnet18", dict(block="bottleneck"), r"^resnet18 fixes block='basic'"),
    ("resnext50_32x4d", dict(groups=64), r"^resnext50_32x4d fixes groups=32"),
    ("resnet20", dict(depth=32), r"^resnet20 fixes depth=20; build zoo.resnet.CifarResNet"),
])
def test_a_variant_fixes_its_table_fields(name, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create(name, **override)


@pytest.mark.parametrize("name, override", [("resnet18", dict(groups=2)), ("resnet34", dict(width_per_group=128))])
def test_basic_blocks_refuse_groups_and_width_as_torchvision_does(name, override):
    """torchvision: "BasicBlock only supports groups=1 and base_width=64"; they were ignored here (the
    same 11,689,512 parameters as a plain resnet18)."""
    with pytest.raises(ValueError, match=r"^groups=.*width_per_group=.*: basic blocks \(resnet18 / resnet34\) take only"):
        zoo.create(name, **override)
    zoo.create(name, groups=1, width_per_group=64)


def test_free_options_of_a_variant():
    model = zoo.create("resnet50", num_classes=10, small_input=True, norm="group")
    assert isinstance(model, nn.Module) and (model.layers, model.block) == ((3, 4, 6, 3), "bottleneck")
    assert "batch_stats" not in abstract_variables(model, (32, 32, 3))


@pytest.mark.parametrize("block, last", [("basic", "bn2"), ("bottleneck", "bn3")])
def test_zero_init_residual_zeroes_each_blocks_last_norm_scale(block, last):
    """torchvision's ``zero_init_residual=True``: ``nn.init.constant_(m.bn3.weight, 0)`` (Bottleneck) /
    ``m.bn2.weight`` (BasicBlock) in every block, nothing else (the Flax ImageNet example's init).
    (resnet18 / resnet50 give 8 / 16 such blocks; one block per stage here, for speed. The compiled
    init returns the norm scales alone: XLA drops the random kernels it would spend ~15 s compiling.)"""
    import jax
    from flax import traverse_util

    x = np.zeros((1, 32, 32, 3), np.float32)
    model = ResNet(block=block, layers=(1, 2, 1, 1), num_classes=10)

    def scales(m):
        flat = traverse_util.flatten_dict(m.init(jax.random.key(0), x)["params"])
        return {k[:-1]: a for k, a in flat.items() if k[-1] == "scale"}

    zeroed = jax.jit(lambda: scales(model.clone(zero_init_residual=True)))()
    zeros = sorted(k for k, a in zeroed.items() if not np.any(a))
    assert len(zeros) == 5 and {k[-1] for k in zeros} == {last}
    assert all(np.all(a == 1) for k, a in zeroed.items() if k not in zeros)
    assert all(np.all(a == 1) for a in jax.jit(lambda: scales(model))().values())


def test_small_input_trains_at_32_by_default():
    """resnet18_cifar10 (the CIFAR stem, kuangliu/pytorch-cifar at 32x32) once trained on CIFAR images
    resized to 224: 49x the compute, a 28x28 last map instead of 4x4."""
    from configs import resnet18_cifar10
    from train.data.pipeline import model_image_shape

    assert model_image_shape(resnet18_cifar10.get_config()) == (32, 32, 3)
    assert zoo.create("resnet18", small_input=True).example_input_shape() == (32, 32, 3)
