"""zoo.inspect.plots: an attribution figure draws its map and its overlay with one colour map and one
scale (a signed map, such as occlusion's, on a diverging scale centred on 0)."""
import numpy as np
import pytest

from zoo.inspect import plots


@pytest.mark.parametrize("symmetric", [False, True])
def test_map_and_overlay_share_the_colour_map_and_scale(symmetric):
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    heatmap = np.linspace(-0.3, 0.9, 64, dtype=np.float32).reshape(8, 8)
    fig = plots.attribution_figure(image, heatmap, symmetric=symmetric)
    panel, overlay = fig.axes[1].images[0], fig.axes[2].images[-1]
    assert panel.cmap.name == overlay.cmap.name == ("RdBu_r" if symmetric else "jet")
    assert panel.get_clim() == overlay.get_clim()
    np.testing.assert_allclose(panel.get_clim(), (-0.9, 0.9) if symmetric else (-0.3, 0.9), rtol=1e-6)
    np.testing.assert_array_equal(panel.get_array(), overlay.get_array())
    plots._plt().close(fig)


@pytest.mark.parametrize("rgb", [False, True])
def test_a_coarse_map_is_drawn_over_the_whole_image(rgb):
    """Grad-CAM's upsample=False map (5x5 over a 28x28 digit) once covered the image's top-left 5x5
    pixels only (the overlay's axes took the last imshow's extent)."""
    image = np.linspace(0, 1, 28 * 28 * (3 if rgb else 1), dtype=np.float32).reshape(28, 28, *((3,) if rgb else ()))
    fig = plots.attribution_figure(image, np.arange(25, dtype=np.float32).reshape(5, 5))
    shown, overlay = fig.axes[0], fig.axes[2]
    assert overlay.get_xlim() == shown.get_xlim() == (-0.5, 27.5)
    assert overlay.get_ylim() == shown.get_ylim() == (27.5, -0.5)
    assert tuple(overlay.images[-1].get_extent()) == tuple(overlay.images[0].get_extent()) == (-0.5, 27.5, 27.5, -0.5)
    plots._plt().close(fig)


def test_attribution_figure_takes_one_map():
    with pytest.raises(ValueError, match=r"^heatmap: one map \(h, w\) \(e\.g\. zi\.saliency\(\.\.\.\)\[0\]\), "
                                         r"got shape \(1, 28, 28\)$"):
        plots.attribution_figure(np.zeros((28, 28), np.float32), np.zeros((1, 28, 28), np.float32))


@pytest.mark.parametrize("preprocessing, message", [
    ({}, r"^preprocessing: a dict with the 'mean' and 'std' the images were normalised with \(the checkpoint's "
         r"meta\['preprocessing'\]\), got keys \[\]$"),
    ({"mean": [0.1]}, r"^preprocessing: a dict with the 'mean' and 'std' .*, got keys \['mean'\]$"),
    ([0.1, 0.3], r"^preprocessing: a dict with the 'mean' and 'std' .*, got a list$"),
    ({"mean": [0.5] * 3, "std": [0.2] * 3},
     r"^preprocessing: mean and std of 3 and 3 channels for an image of shape \(28, 28, 1\); they must have one value "
     r"per channel of the image \(H, W, C\), or one for all$"),
])
def test_to_display_needs_the_preprocessing_of_the_image(preprocessing, message):
    """A dict without mean/std was a KeyError; 3-channel statistics made a 1-channel image RGB (broadcast)."""
    with pytest.raises(ValueError, match=message):
        plots.to_display(np.zeros((28, 28, 1), np.float32), preprocessing)


def test_to_display_undoes_the_normalisation():
    x = np.full((2, 2, 3), [0.0, 1.0, -1.0], np.float32)
    np.testing.assert_allclose(plots.to_display(x, {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}),
                               np.full((2, 2, 3), [0.5, 0.75, 0.25]))
    np.testing.assert_allclose(plots.to_display(x[None, ..., :1], {"mean": [0.5], "std": [0.25]}), np.full((2, 2), 0.5))
    np.testing.assert_allclose(plots.to_display(x, {"mean": 0.5, "std": 0.25})[0, 0], [0.5, 0.75, 0.25])


def test_a_grid_title_says_when_only_the_first_tiles_are_shown(monkeypatch, tmp_path):
    """train.inspect titled layer4's picture "512 maps 2x2" over its first 64 maps: a given title lost
    the "(first 64)" that only the default title had."""
    titles = []

    def save(fig, path, title=None):
        titles.append(title)
        plots._plt().close(fig)
        return path

    monkeypatch.setattr(plots, "_save_figure", save)
    maps = np.random.default_rng(0).standard_normal((1, 2, 2, 70)).astype(np.float32)
    plots.plot_feature_maps(maps, tmp_path / "a.png", title="resnet18 layer4: 70 maps 2x2")
    plots.plot_feature_maps(maps, tmp_path / "b.png")
    plots.plot_feature_maps(maps[..., :64], tmp_path / "c.png", title="resnet18 layer4: 64 maps 2x2")
    plots.plot_filters(np.zeros((5, 3, 3, 3), np.float32), tmp_path / "d.png", title="conv1", max_filters=4)
    plots.plot_filters(np.zeros((4, 3, 3, 3), np.float32), tmp_path / "e.png", title="conv1", max_filters=4)
    assert titles == ["resnet18 layer4: 70 maps 2x2 (first 64)", "70 maps 2x2 (first 64)",
                      "resnet18 layer4: 64 maps 2x2", "conv1 (first 4)", "conv1"]
