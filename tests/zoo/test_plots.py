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
