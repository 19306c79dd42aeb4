"""ShuffleNet v1 and v2 against the papers' tables (v1 Table 1 from tests/fixtures/reference.json, v2
Table 5 and the official release copied here), the unit structure, and an independent numpy computation
of a v1 unit. Shapes use jax.eval_shape (no compilation)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from helpers import inner_loop_sample, abstract_variables, forward_shapes, images, key, random_variables, reference, run_once
from zoo import shufflenet

# ShuffleNet v1, Table 1: stage2, stage3, stage4 output channels at 1x, per group count; conv1 24.
TABLE1 = {int(g): tuple(c) for g, c in reference()["shufflenet_v1_table1"]["channels_1x"].items()}
CONV1 = reference()["shufflenet_v1_table1"]["conv1"]
# Official release, ShuffleNetV1/network.py (megvii-model/ShuffleNet-Series): [conv1, stage2, stage3, stage4].
OFFICIAL = {
    (3, 0.5): (12, 120, 240, 480), (3, 1.0): (24, 240, 480, 960), (3, 1.5): (24, 360, 720, 1440),
    (3, 2.0): (48, 480, 960, 1920),
    (8, 0.5): (16, 192, 384, 768), (8, 1.0): (24, 384, 768, 1536), (8, 1.5): (24, 576, 1152, 2304),
    (8, 2.0): (48, 768, 1536, 3072),
}
# ShuffleNet v2, Table 5 (arXiv:1807.11164) = torchvision's stages_out_channels.
TABLE5 = {"x0_5": (24, 48, 96, 192, 1024), "x1_0": (24, 116, 232, 464, 1024),
          "x1_5": (24, 176, 352, 704, 1024), "x2_0": (24, 244, 488, 976, 2048)}


def feature_shapes(model, size=224):
    """Shapes of the tapped features for one image."""
    return forward_shapes(model, (size, size, 3))[0]


def abstract_params(model, size=64):
    return abstract_variables(model, (size, size, 3))["params"]


# ---------------------------------------------------------------------- ShuffleNet v1

@pytest.mark.parametrize("g", sorted(TABLE1))
def test_v1_stage_channels_are_table1(g):
    shapes = feature_shapes(zoo.create(f"shufflenet_v1_g{g}"))
    assert shapes["stem"] == (1, 56, 56, CONV1)
    s2, s3, s4 = TABLE1[g]
    assert shapes["stage2"] == (1, 28, 28, s2)
    assert shapes["stage3"] == (1, 14, 14, s3)
    assert shapes["stage4"] == (1, 7, 7, s4)
    assert shapes["pre_logits"] == (1, s4)


@pytest.mark.parametrize("g, s", inner_loop_sample(sorted(OFFICIAL), {(1, 1.0), (3, 0.5)}))
def test_v1_widths_are_the_official_release(g, s):
    stem, *stages = OFFICIAL[(g, s)]
    assert shufflenet.v1_channels(g, s) == (stem, tuple(stages))
    shapes = feature_shapes(shufflenet.ShuffleNetV1(groups=g, width_mult=s), size=64)
    assert [shapes["stem"][-1], shapes["stage2"][-1], shapes["stage3"][-1], shapes["stage4"][-1]] == [stem, *stages]


@pytest.mark.integration
@pytest.mark.parametrize("g", shufflenet.GROUPS)
@pytest.mark.parametrize("s", shufflenet.WIDTHS)
def test_v1_every_groups_width_builds(g, s):
    """Every combination builds; channels are s x Table 1 (rounded up to a multiple of 4g)."""
    stem, stages = shufflenet.v1_channels(g, s)
    for c, ref in zip(stages, TABLE1[g]):
        assert c % (4 * g) == 0 and ref * s <= c < ref * s + 4 * g
    assert stem % g == 0
    shapes = feature_shapes(shufflenet.ShuffleNetV1(groups=g, width_mult=s), size=64)
    assert shapes["stage4"] == (1, 2, 2, stages[2])


def test_v1_unit_layers():
    g = 3
    p = abstract_params(zoo.create("shufflenet_v1_g3"))
    assert p["conv1_0"]["kernel"].shape == (3, 3, 3, 24)
    # first unit of stage2: no group conv on the first pointwise layer; stride-2 branch gives out - in
    u = p["stage2_0"]
    assert u["conv1"]["kernel"].shape == (1, 1, 24, 60)
    assert u["conv2"]["kernel"].shape == (3, 3, 1, 60)  # depthwise
    assert u["conv3"]["kernel"].shape == (1, 1, 60 // g, 240 - 24)
    u = p["stage2_1"]
    assert u["conv1"]["kernel"].shape == (1, 1, 240 // g, 60)
    assert u["conv3"]["kernel"].shape == (1, 1, 60 // g, 240)
    u = p["stage3_0"]
    assert u["conv1"]["kernel"].shape == (1, 1, 240 // g, 120)
    assert u["conv3"]["kernel"].shape == (1, 1, 120 // g, 480 - 240)
    assert sorted(k for k in p if k.startswith("stage")) == sorted(
        [f"stage2_{j}" for j in range(4)] + [f"stage3_{j}" for j in range(8)] + [f"stage4_{j}" for j in range(4)])
    assert set(u) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3"}
    assert set(p["fc"]) == {"kernel"}  # official release: Linear(..., bias=False)


def test_channel_shuffle_interleaves_groups():
    x = jnp.arange(6.0).reshape(1, 1, 1, 6)  # groups of 3: [0 1 2 | 3 4 5]
    np.testing.assert_array_equal(shufflenet.channel_shuffle(x, 2)[0, 0, 0], [0, 3, 1, 4, 2, 5])


@pytest.mark.parametrize("name, g", [("shufflenet_v1_g3", 3), ("shufflenet_v1_g8", 8), ("shufflenet_v2_x0_5", 2)])
def test_channel_shuffle_is_used(monkeypatch, name, g):
    calls = []
    shuffle = shufflenet.channel_shuffle

    def spy(x, groups):
        calls.append((groups, x.shape[-1]))
        return shuffle(x, groups)

    monkeypatch.setattr(shufflenet, "channel_shuffle", spy)
    abstract_params(zoo.create(name))
    assert len(calls) == 16 and {c[0] for c in calls} == {g}  # once per unit


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(groups=5), r"groups=5.*allowed.*\(1, 2, 3, 4, 8\)"),
    (dict(groups=0), "groups"),
    (dict(groups=True), "groups"),
    (dict(width_mult=0.75), r"width_mult=0.75.*allowed.*\(0.5, 1.0, 1.5, 2.0\)"),
    (dict(width_mult=3), "width_mult"),
])
def test_v1_bad_options(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        zoo.create("shufflenet_v1", **kwargs)


def test_v1_too_small_input():
    with pytest.raises(ValueError, match=r"too small.*expected \(B, H, W, 3\)"):
        abstract_params(zoo.create("shufflenet_v1_g3"), size=16)


def _np_bn(x, p, s, eps=1e-5):
    return (x - s["mean"]) / np.sqrt(s["var"] + eps) * p["scale"] + p["bias"]


def _np_conv1x1(x, k, groups):  # x (H, W, C), k (1, 1, C / groups, O)
    c, o = x.shape[-1], k.shape[-1]
    xs = x.reshape(*x.shape[:2], groups, c // groups)
    ks = k[0, 0].reshape(c // groups, groups, o // groups).transpose(1, 0, 2)  # (g, C/g, O/g)
    return np.einsum("hwgc,gco->hwgo", xs, ks).reshape(*x.shape[:2], o)


def _np_dw3x3(x, k, stride):  # zero padding 1
    h, w, c = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, c))
    for i in range(3):
        for j in range(3):
            out += xp[i:i + h, j:j + w] * k[i, j, 0]
    return out[::stride, ::stride]


def _np_avgpool3x3s2(x):  # count_include_pad=True, padding 1
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    return sum(xp[i:i + h, j:j + w] for i in range(3) for j in range(3))[::2, ::2] / 9.0


def _np_shuffle(x, g):  # paper: reshape (g, n), transpose, flatten
    c = x.shape[-1]
    return x.reshape(*x.shape[:-1], g, c // g).swapaxes(-1, -2).reshape(x.shape)


@pytest.mark.parametrize("strides, in_ch, first_group", [(1, 48, True), (2, 24, True), (2, 12, False)])
def test_v1_unit_matches_numpy_figure2(strides, in_ch, first_group):
    """Figure 2 (b)/(c) written out in numpy: GConv-BN-ReLU, shuffle, DWConv-BN (no ReLU), GConv-BN,
    add + ReLU (stride 1) or concat(avg-pool, branch) + ReLU (stride 2)."""
    g, out = 3, 48
    unit = shufflenet.ShuffleUnitV1(out, strides, g, zoo.layers.Ops(), first_group=first_group)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, in_ch)).astype(np.float32)
    if strides == 2:
        x = np.abs(x)  # unit inputs follow a ReLU
    v = jax.jit(unit.init)(key(0), x)
    v = jax.tree_util.tree_map_with_path(  # random weights; positive variances
        lambda path, a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape) if path[-1].key == "var"
                                    else rng.uniform(-1.0, 1.0, a.shape), jnp.float32), v)
    got = np.asarray(jax.jit(unit.apply)(v, x))[0]
    p, s = v["params"], v["batch_stats"]
    y = np.maximum(_np_bn(_np_conv1x1(x[0], p["conv1"]["kernel"], g if first_group else 1), p["bn1"], s["bn1"]), 0)
    y = _np_shuffle(y, g)
    y = _np_bn(_np_dw3x3(y, np.asarray(p["conv2"]["kernel"]), strides), p["bn2"], s["bn2"])
    y = _np_bn(_np_conv1x1(y, p["conv3"]["kernel"], g), p["bn3"], s["bn3"])
    ref = np.maximum(x[0] + y, 0) if strides == 1 else np.maximum(np.concatenate([_np_avgpool3x3s2(x[0]), y], -1), 0)
    assert got.shape == ref.shape == (8 // strides, 8 // strides, out)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_v1_forward_small_input():
    model = zoo.create("shufflenet_v1_g3", num_classes=7)
    x = images((2, 64, 64, 3))
    v = random_variables(model, x.shape[1:])  # no compiled init: values only need a sane scale

    def run(v, x):  # one compilation: eval forward, train forward
        return model.apply(v, x), model.apply(v, x, train=True, mutable=["batch_stats"])[1]

    logits, upd = run_once(run, v, x)
    assert logits.shape == (2, 7) and np.isfinite(np.asarray(logits)).all()
    assert not np.allclose(v["batch_stats"]["stage2_0"]["bn1"]["mean"], upd["batch_stats"]["stage2_0"]["bn1"]["mean"])


# ---------------------------------------------------------------------- ShuffleNet v2

@pytest.mark.parametrize("width", sorted(TABLE5))
def test_v2_channels_are_table5(width):
    c1, c2, c3, c4, c5 = TABLE5[width]
    shapes = feature_shapes(zoo.create(f"shufflenet_v2_{width}"))
    assert shapes["stem"] == (1, 56, 56, c1)
    assert (shapes["stage2"], shapes["stage3"], shapes["stage4"]) == ((1, 28, 28, c2), (1, 14, 14, c3), (1, 7, 7, c4))
    assert shapes["conv5"] == (1, 7, 7, c5) and shapes["pre_logits"] == (1, c5)


def test_v2_torchvision_names_and_shapes():
    """torchvision's state_dict of shufflenet_v2_x1_0 (weights, OIHW) -> ours (HWIO)."""
    p = abstract_params(zoo.create("shufflenet_v2_x1_0"))
    assert set(p) == {"conv1_0", "conv1_1", "conv5_0", "conv5_1", "fc"} | {
        f"stage{s}_{j}" for s, n in ((2, 4), (3, 8), (4, 4)) for j in range(n)}
    assert set(p["stage2_0"]) == {"branch1_0", "branch1_1", "branch1_2", "branch1_3",
                                  "branch2_0", "branch2_1", "branch2_3", "branch2_4", "branch2_5", "branch2_6"}
    assert set(p["stage2_1"]) == {"branch2_0", "branch2_1", "branch2_3", "branch2_4", "branch2_5", "branch2_6"}
    torch_shapes = {  # name: torchvision weight shape (OIHW / (out, in))
        "conv1_0": (24, 3, 3, 3), "stage2_0/branch1_0": (24, 1, 3, 3), "stage2_0/branch1_2": (58, 24, 1, 1),
        "stage2_0/branch2_0": (58, 24, 1, 1), "stage2_0/branch2_3": (58, 1, 3, 3), "stage2_0/branch2_5": (58, 58, 1, 1),
        "stage2_1/branch2_0": (58, 58, 1, 1), "stage3_0/branch1_0": (116, 1, 3, 3), "conv5_0": (1024, 464, 1, 1),
        "fc": (1000, 1024),
    }
    for name, shape in torch_shapes.items():
        mod = p
        for part in name.split("/"):
            mod = mod[part]
        ours = mod["kernel"].shape
        assert ours == (tuple(shape[2:]) + (shape[1], shape[0]) if len(shape) == 4 else shape[::-1]), name
    assert p["fc"]["bias"].shape == (1000,)
    assert "bias" not in p["conv1_0"] and p["conv1_1"]["scale"].shape == (24,)


def test_v2_bad_options():
    with pytest.raises(ValueError, match="stages_out_channels"):
        shufflenet.ShuffleNetV2(stages_out_channels=(24, 115, 232, 464, 1024))
    with pytest.raises(ValueError, match="stages_repeats"):
        shufflenet.ShuffleNetV2(stages_repeats=(4, 8))


def test_v2_forward_small_input():
    model = zoo.create("shufflenet_v2_x0_5", num_classes=7)
    x = images((2, 64, 64, 3))
    logits = run_once(model.apply, random_variables(model, x.shape[1:]), x)
    assert logits.shape == (2, 7) and np.isfinite(np.asarray(logits)).all()


def test_v2_unit_split_and_shuffle():
    """Stride 1: the first half of the channels passes through untouched, interleaved by the shuffle."""
    unit = shufflenet.InvertedResidual(8, 1, zoo.layers.Ops())
    x = images((1, 4, 4, 8))
    v = jax.jit(unit.init)(key(0), x)
    y = np.asarray(jax.jit(unit.apply)(v, x))
    np.testing.assert_array_equal(y[..., 0::2], x[..., :4])  # shuffle(2) puts x1 at the even channels
    k = v["params"]["branch2_0"]["kernel"]  # torchvision leaves PyTorch's default: U(+-1/sqrt(fan_in)), fan_in 4
    assert float(jnp.abs(k).max()) <= 0.5 and float(k.std()) > 0.1


