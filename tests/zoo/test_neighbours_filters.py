"""Fixed filters, first-layer filters, feature maps, plots and nearest neighbours (zoo.inspect.filters,
neighbours, plots): the notes' worked filter examples, and a LeNet-5 trained briefly on mnist5k (the
shared ``trained_lenet5`` fixture)."""
import matplotlib.image
import numpy as np
import pytest

import zoo
from zoo import inspect as zi

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


# ----------------------------------------------------------------------------- on a trained LeNet-5

def test_neighbours_in_feature_and_pixel_space(trained_lenet5):
    model, variables, x, labels = (trained_lenet5[k] for k in ("model", "variables", "x", "labels"))
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


def test_first_layer_filters_feature_maps_and_grid_plots(trained_lenet5, tmp_path):
    model, variables, x = trained_lenet5["model"], trained_lenet5["variables"], trained_lenet5["x"]
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
             zi.plot_attribution(zi.to_display(x[0], trained_lenet5["pp"]), np.ones((28, 28)), tmp_path / "a.png")]
    for p in paths:
        assert matplotlib.image.imread(p).ndim == 3
    shown = zi.to_display(x[0], trained_lenet5["pp"])
    np.testing.assert_allclose(shown, trained_lenet5["raw"][0, ..., 0] / 255.0, atol=1e-5)  # undoes the normalisation
