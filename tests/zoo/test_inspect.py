"""Seeing inside the networks (zoo.inspect, python -m train.inspect): fixed filters, receptive fields,
and, on a LeNet-5 trained briefly on mnist5k (once for the module), saliency, Grad-CAM, occlusion,
class models, neighbours, filters and feature maps, and the command's PNGs."""
import warnings

import flax.linen as nn
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from PIL import Image

import train
import zoo
from configs import lenet5_mnist5k
from train import data
from zoo import inspect as zi
from zoo.layers import Ops, avg_pool

# ----------------------------------------------------------------------------- fixed filters (notes)


def test_sobel_on_the_notes_example_gives_400():
    image = np.array([[100, 100, 200, 200]] * 4, np.float32)
    np.testing.assert_array_equal(zi.apply_filter(image, "sobel_vertical"), np.full((2, 2), 400.0))
    np.testing.assert_array_equal(zi.apply_filter(image, "sobel_horizontal"), np.zeros((2, 2)))
    # the notes' 6x6 vertical-edge example: rows 10 10 10 0 0 0 -> rows 0 30 30 0
    edge = np.array([[10, 10, 10, 0, 0, 0]] * 6, np.float32)
    np.testing.assert_array_equal(zi.apply_filter(edge, "vertical_edge"), np.array([[0, 30, 30, 0]] * 4, np.float32))
    # every classic kernel goes through the same conv code (zoo.layers.conv2d): padding, stride, channels
    for name, k in zi.FIXED_FILTERS.items():
        np.testing.assert_allclose(zi.apply_filter(image, name, padding=1), zoo.layers.conv2d(image, k, 1, 1))
    assert zi.apply_filter(np.ones((8, 8, 3)), "average", stride=2).shape == (3, 3, 3)
    np.testing.assert_allclose(zi.apply_filter(np.ones((5, 5)), "average"), np.ones((3, 3)), rtol=1e-6)
    for a, b in (("prewitt_vertical", "prewitt_horizontal"), ("scharr_vertical", "scharr_horizontal")):
        np.testing.assert_array_equal(zi.FIXED_FILTERS[a].T, zi.FIXED_FILTERS[b])
        assert zi.apply_filter(image, a).min() > 0 and not zi.apply_filter(image, b).any()
    with pytest.raises(ValueError, match="sobel_vertical"):
        zi.apply_filter(image, "sobel")


# ----------------------------------------------------------------------------- receptive fields

def _sizes(rf, names):
    return [rf[n].size[0] for n in names]


def test_receptive_fields_of_lenet5_match_hand_computation():
    # conv 5x5 pad 2 -> 5; pool 2/2 -> 6 (jump 2); conv 5x5 -> 6 + 4*2 = 14; pool -> 16 (jump 4);
    # flatten + fc1 sees the whole 5x5 map: 16 + 4*4 = 32, centred on the 28x28 input (13.5)
    rf = zi.receptive_fields(zoo.create("lenet5"))
    expected = {"c1": (5, 1, 0), "s2": (6, 2, 0.5), "c3": (14, 2, 4.5), "s4": (16, 4, 5.5)}
    for name, (r, j, start) in expected.items():
        assert (rf[name].size, rf[name].jump, rf[name].start) == ((r, r), (j, j), (start, start)), name
        assert rf[name].spatial and rf[name].kind == "tap"
    assert rf["conv1"].size == (5, 5) and rf["conv2"].size == (14, 14) and rf["conv2"].kind == "module"
    assert rf["max_pool1"].size == (6, 6) and rf["max_pool2"].kind == "pool"
    for name in ("c5", "fc1", "pre_logits"):
        assert not rf[name].spatial and rf[name].size == (32, 32) and rf[name].start == (13.5, 13.5)
    names = list(rf)
    assert names.index("c1") < names.index("s2") < names.index("c3") < names.index("s4") < names.index("pre_logits")
    # the paper's network (no padding, 32x32): C1 5, S2 6, C3 14, S4 16, C5 32 (one unit, centred)
    rf = zi.receptive_fields(zoo.create("lenet5_classic"))
    assert _sizes(rf, ["C1", "S2", "C3", "S4", "C5"]) == [5, 6, 14, 16, 32]
    assert rf["C5"].spatial and rf["C5"].jump == (4, 4) and rf["C5"].start == (15.5, 15.5)
    assert "S4" in zi.receptive_field_table(rf)


def test_receptive_fields_of_vgg16_and_alexnet_match_hand_computation():
    rf = zi.receptive_fields(zoo.create("vgg16"))
    convs = [f"features_{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    pools = [f"max_pool{i}" for i in range(1, 6)]
    # conv1_1 3, conv1_2 5, pool1 6, conv2_1 10, conv2_2 14, pool2 16, conv3 24 32 40, pool3 44,
    # conv4 60 76 92, pool4 100, conv5 132 164 196, pool5 212
    assert _sizes(rf, convs) == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]
    assert _sizes(rf, pools) == [6, 16, 44, 100, 212]
    assert [rf[p].jump[0] for p in pools] == [2, 4, 8, 16, 32]
    assert rf["block3_conv1"].size == (24, 24) and rf["block5_conv3"].size == (196, 196)
    assert rf["max_pool5"].start == (15.5, 15.5) and rf["max_pool5"].shape == (1, 7, 7, 512)
    # AlexNet (2012): conv1 11/4 -> 11, pool 3/2 -> 19, conv2 5 -> 51, pool -> 67, conv3-5 -> 99 131 163, pool -> 195
    rf = zi.receptive_fields(zoo.create("alexnet_v1"))
    assert _sizes(rf, ["conv1", "max_pool1", "conv2", "max_pool2", "conv3", "conv4", "conv5", "max_pool3"]) == \
        [11, 19, 51, 67, 99, 131, 163, 195]
    assert rf["relu5"].jump == (16, 16) and rf["max_pool3"].jump == (32, 32)


class _Stack(nn.Module):
    """Three stacked 3x3 convs (the notes' 3 -> 5 -> 7), a stride-2 conv, a dilated conv, a pool."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        ops = Ops(train=train, norm_kind=None)
        for i in range(3):
            x = nn.relu(ops.conv(x, 4, 3, name=f"conv{i + 1}"))
        x = ops.conv(x, 4, 3, strides=2, name="down")
        x = ops.conv(x, 4, 3, dilation=2, name="dilated")
        x = avg_pool(x, 2, 2)
        x = ops.conv(x, 4, (1, 3), padding=(0, 0), name="wide")
        return x.mean(axis=(1, 2))


def test_receptive_field_recursion_stacked_strided_dilated_and_residual_models():
    rf = zi.receptive_fields(_Stack(), (32, 32, 1))
    assert _sizes(rf, ["conv1", "conv2", "conv3"]) == [3, 5, 7]
    assert rf["down"].size == (9, 9) and rf["down"].jump == (2, 2) and rf["down"].start == (0, 0)
    assert rf["dilated"].size == (17, 17) and rf["dilated"].jump == (2, 2)        # 9 + (3-1)*2*2
    assert rf["avg_pool1"].size == (19, 19) and rf["avg_pool1"].jump == (4, 4) and rf["avg_pool1"].start == (1, 1)
    assert rf["wide"].size == (19, 27) and rf["wide"].start == (1, 5)            # 1x3, no padding
    # residual networks and squeeze-excitation gates: published theoretical fields
    rf = zi.receptive_fields(zoo.create("resnet18"), modules=False)
    assert rf["layer4"].size == (435, 435) and rf["layer4"].jump == (32, 32)
    assert zi.default_cam_layer(zoo.create("resnet18")) == "layer4"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # squeeze-excitation, hard-swish: no primitive left unexplained
        rf = zi.receptive_fields(zoo.create("mobilenet_v3_small"), modules=False)
    assert rf["stem"].size == (3, 3) and rf["last_conv"].jump == (32, 32) and not rf["pre_logits"].spatial


# ----------------------------------------------------------------------------- on a trained LeNet-5

@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lenet5_inspect")
    c = lenet5_mnist5k.get_config()
    c.num_epochs = 3.0
    train.fit(c, workdir)
    model, variables = train.restore(workdir)
    pp = train.restore_meta(workdir)["preprocessing"]
    test = data.open_source("mnist5k", "test", image_shape=(28, 28, 1))  # the eval split, uint8
    raw = test.images[:48]
    return dict(workdir=workdir, model=model, variables=variables, pp=pp, raw=raw, labels=test.labels[:48],
                x=data.preprocess_eval(raw, pp))


def _digit_and_border(raw):
    digit = raw[..., 0] > 128
    border = np.zeros(raw.shape[1:3], bool)
    border[:4], border[-4:], border[:, :4], border[:, -4:] = True, True, True, True
    return digit, border


def _concentration(maps, raw):
    """(mean over images of the map's mean on digit pixels, ... on the 4-pixel border, fraction of
    images whose digit mean beats their border mean)."""
    digit, border = _digit_and_border(raw)
    d = np.array([m[k].mean() for m, k in zip(maps, digit)])
    b = np.array([m[border].mean() for m in maps])
    return d.mean(), b.mean(), (d > b).mean()


def test_saliency_and_grad_cam_are_input_sized_finite_non_negative_and_on_the_digit(lenet):
    model, variables, x, raw = lenet["model"], lenet["variables"], lenet["x"], lenet["raw"]
    assert zi.default_cam_layer(model) == "s4"  # LeNet's last spatial tap (last pool output, 5x5)
    sal = zi.saliency(model, variables, x)
    cam = zi.grad_cam(model, variables, x)
    cam_c3 = zi.grad_cam(model, variables, x, layer="c3")
    for maps in (sal, cam, cam_c3):
        assert maps.shape == x.shape[:3] and np.isfinite(maps).all() and (maps >= 0).all()
        assert (maps.reshape(len(maps), -1).max(axis=1) > 0).mean() > 0.9  # defined (non-zero) on most images
    d, b, frac = _concentration(sal, raw)
    assert d > 2 * b and frac > 0.9, (d, b, frac)
    for maps in (cam, cam_c3):
        d, b, frac = _concentration(maps, raw)
        assert d > 1.1 * b and frac > 0.5, (d, b, frac)
    # explicit classes; the layer's own resolution; a single image; Grad-CAM needs a spatial tap
    assert zi.grad_cam(model, variables, x[:2], class_index=[3, 4], upsample=False).shape == (2, 5, 5)
    assert zi.saliency(model, variables, x[0], class_index=lenet["labels"][0]).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="feature taps"):
        zi.grad_cam(model, variables, x[:1], layer="conv2")


def test_occlusion_of_a_blank_border_changes_the_probability_less_than_of_the_digit(lenet):
    model, variables, x, raw = lenet["model"], lenet["variables"], lenet["x"], lenet["raw"]
    patch, checked = 6, 0
    for i in range(8):
        o = zi.occlusion(model, variables, x[i], patch=patch, stride=2)
        assert o.drops.shape == (len(o.rows), len(o.cols)) == (12, 12) and o.map.shape == (28, 28)
        assert np.isfinite(o.map).all() and o.class_index == zi.predict(model, variables, x[i])[0][0]
        ink = np.array([[raw[i, r:r + patch, c:c + patch].sum() for c in o.cols] for r in o.rows])
        blank = ink == 0  # patch positions over the blank border only
        if not blank.any():
            continue
        checked += 1
        assert np.abs(o.drops[blank]).max() < o.drops[ink > 0].max()
        assert np.abs(o.drops[blank]).max() < 0.05
    assert checked >= 4
    # the batched forward passes agree with occluding by hand
    o = zi.occlusion(model, variables, x[0], class_index=2, patch=10, stride=9)
    y0, x0 = int(o.rows[1]), int(o.cols[2])
    by_hand = np.array(x[0])
    by_hand[y0:y0 + 10, x0:x0 + 10] = 0.0
    p = zi.predict(model, variables, by_hand)[1][0, 2]
    assert o.drops[1, 2] == pytest.approx(o.probability - p, abs=1e-5)
    assert list(o.rows) == [0, 9, 18] and o.class_index == 2


def test_class_model_raises_the_class_score(lenet):
    model, variables = lenet["model"], lenet["variables"]
    for c in (0, 7):
        img, scores = zi.class_model(model, variables, c, steps=20)  # as the command below
        assert img.shape == (28, 28, 1) and scores.shape == (21,) and np.isfinite(img).all()
        zero_logits = np.asarray(model.apply(variables, jnp.zeros((1, 28, 28, 1)), train=False))[0]
        assert scores[0] == pytest.approx(zero_logits[c], abs=1e-4)  # the ascent starts from the zero image
        assert scores[-1] > scores[0] + 1.0
        logits = np.asarray(model.apply(variables, jnp.asarray(img)[None], train=False))[0]
        assert logits[c] == pytest.approx(scores[-1], rel=1e-4) and logits.argmax() == c


def test_neighbours_in_feature_and_pixel_space(lenet):
    model, variables, x, labels = lenet["model"], lenet["variables"], lenet["x"], lenet["labels"]
    emb = zi.embed(model, variables, x, batch_size=16)
    assert emb.shape == (48, 84) and np.isfinite(emb).all()
    r = zi.neighbours(model, variables, x[5], x, k=5, embeddings=emb)
    for space in ("feature", "pixel"):
        idx, dist = r[space]
        assert idx.shape == dist.shape == (5,) and idx[0] == 5 and dist[0] == pytest.approx(0, abs=1e-3)
        assert (np.diff(dist) >= -1e-9).all()
    assert (labels[r["feature"][0][1:]] == labels[5]).mean() >= 0.5
    i, d = zi.nearest_neighbours(emb[:3], emb, k=2, metric="cosine")
    assert (i[:, 0] == np.arange(3)).all() and np.allclose(d[:, 0], 0, atol=1e-6)
    with pytest.raises(ValueError, match="euclidean"):
        zi.nearest_neighbours(emb[0], emb, metric="manhattan")


def test_first_layer_filters_feature_maps_and_grid_plots(lenet, tmp_path):
    model, variables, x = lenet["model"], lenet["variables"], lenet["x"]
    f = zi.first_layer_filters(model, variables)
    assert f.shape == (6, 5, 5, 1)
    np.testing.assert_array_equal(f[2, :, :, 0], np.asarray(variables["params"]["conv1"]["kernel"])[:, :, 0, 2])
    assert zi.feature_maps(model, variables, x[:2], "c3").shape == (2, 10, 10, 16)
    assert zi.feature_maps(model, variables, x[0], "conv1").shape == (1, 28, 28, 6)  # a module path
    with pytest.raises(ValueError, match="not a spatial feature map"):
        zi.feature_maps(model, variables, x[:1], "pre_logits")
    paths = [zi.plot_filters(f, tmp_path / "f.png"),
             zi.plot_feature_maps(zi.feature_maps(model, variables, x[:1], "s2"), tmp_path / "m.png"),
             zi.plot_grid(np.random.default_rng(0).random((5, 4, 4, 3)), tmp_path / "rgb.png", normalize="all"),
             zi.plot_attribution(zi.to_display(x[0], lenet["pp"]), np.ones((28, 28)), tmp_path / "a.png")]
    for p in paths:
        assert matplotlib.image.imread(p).ndim == 3
    shown = zi.to_display(x[0], lenet["pp"])
    np.testing.assert_allclose(shown, lenet["raw"][0, ..., 0] / 255.0, atol=1e-5)  # undoes the normalisation


def test_the_command_writes_readable_pngs(lenet, tmp_path, capsys):
    from train import inspect as command

    digit = tmp_path / "digit.png"
    Image.fromarray(lenet["raw"][3, ..., 0]).save(digit)
    out = tmp_path / "pictures"
    assert command.main(["--workdir", str(lenet["workdir"]), "--image", str(digit), "--out", str(out),
                         "--steps", "20", "--neighbours_max", "200", "--k", "4", "--patch", "6", "--stride", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    written = dict(line.split(": ", 1) for line in lines if line.split(": ", 1)[0] in command.WHAT)
    assert sorted(written) == sorted(command.WHAT)
    assert "predicted" in lines[0]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 9 and (out / "digit_gradcam_s4_0.png").exists() and (out / "filters.png").exists()
    for p in pngs:
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "s4" in (out / "receptive_fields.txt").read_text()
    # the default output folder is next to the checkpoint; classes by name; layers by tap name
    assert command.main(["--workdir", str(lenet["workdir"]), "--index", "0", "--what", "gradcam,features",
                         "--layer", "c3", "--class", "3"]) == 0
    assert sorted(p.name for p in (lenet["workdir"] / "inspect").glob("*.png")) == \
        ["test0_features_c3.png", "test0_gradcam_c3_3.png"]
    assert command.main(["--workdir", str(lenet["workdir"]), "--image", str(digit), "--what", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
