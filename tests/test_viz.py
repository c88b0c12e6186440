"""attrkit.viz: the thesis' colour scale, heatmaps, grids, curves, cascades and tabular plots."""
import warnings

import numpy as np
import pytest
import torch

import attrkit as ak
from attrkit import viz
from attrkit.viz.colors import BLUE, RED, grey, scale_for, to_rgba
from attrkit.viz.heatmaps import render

pytest.importorskip("matplotlib", reason="attrkit.viz needs matplotlib (the report extra)")

from conftest import TinyCNN, tiny_mlp  # noqa: E402


@pytest.fixture(scope="module")
def image_attrs():
    model = TinyCNN(classes=4, size=16).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pix = ak.explain(model, x, "integrated_gradients", target=1, steps=8)
    lay = ak.explain(model, x, "integrated_gradients", target=1, layer="features.2", steps=8)
    sal = ak.explain(model, x, "saliency", target=[0, 2])
    return model, x, pix, lay, sal


def _colorbar_limits(fig):
    cbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert cbars, "the figure has no colour bar"
    return cbars[0].get_ylim()


# ------------------------------------------------------------------------------------------ colours
def test_scale_is_symmetric_and_clipped_at_the_percentile():
    v = np.random.default_rng(0).normal(size=(32, 32)) * 3 + 1     # mostly positive
    s = scale_for(v, "signed", clip=99.0)
    assert s.vmin == -s.vmax
    assert s.vmax == pytest.approx(np.percentile(np.abs(v), 99.0))
    assert scale_for(v, "signed", clip=100).vmax == pytest.approx(np.abs(v).max())
    assert scale_for(v, "positive").vmin == 0 and scale_for(v, "negative").vmax == 0
    with pytest.raises(ValueError, match="mode"):
        scale_for(v, "loud")
    with pytest.raises(ValueError, match="clip"):
        scale_for(v, clip=0)


def test_colours_red_positive_blue_negative_clear_at_zero():
    s = scale_for(np.array([-1.0, 1.0]), clip=100)
    rgba = to_rgba(np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 5.0]), s)
    assert np.allclose(rgba[0, :3], BLUE) and np.allclose(rgba[4, :3], RED)
    assert rgba[2, 3] == 0.0                                # translucent at zero
    assert rgba[1, 3] == rgba[3, 3] == pytest.approx(0.5)   # same opacity for +-v: symmetric
    assert rgba[5, 3] == 1.0                                # beyond the scale: saturated, not wrapped
    pos = to_rgba(np.array([-1.0, 1.0]), scale_for(np.array([-1.0, 1.0]), "positive"))
    assert pos[0, 3] == 0.0 and pos[1, 3] == 1.0


def test_all_zero_attribution_renders_without_warnings(image_attrs):
    _, x, pix, _, _ = image_attrs
    zero = ak.Attribution(values=torch.zeros_like(pix.values), method="zeros", target=pix.target,
                          inputs=x, outputs=pix.outputs)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        s = scale_for(zero.values.numpy())
        assert (s.vmin, s.vmax) == (-1.0, 1.0)
        fig = viz.plot(zero, 0)
        fig.canvas.draw()
        viz.plot_grid([zero], rows="method", cols="target").canvas.draw()
    assert _colorbar_limits(fig) == (-1.0, 1.0)


# ------------------------------------------------------------------------------------------ heatmaps
def test_plot_colour_bar_is_symmetric_around_zero(image_attrs, tmp_path):
    _, _, pix, _, _ = image_attrs
    fig = viz.plot(pix, 1, path=tmp_path / "p.png")
    lo, hi = _colorbar_limits(fig)
    assert lo == pytest.approx(-hi) and hi > 0
    assert hi == pytest.approx(np.percentile(np.abs(pix.heatmap()[1].numpy()), 99.5), rel=1e-5)
    assert (tmp_path / "p.png").stat().st_size > 1000
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2                                   # the input beside the map


def test_layer_maps_are_laid_over_the_grey_image_pixel_maps_are_not(image_attrs):
    _, x, pix, lay, _ = image_attrs
    vl, vp = viz.view(lay, 0), viz.view(pix, 0)
    assert vl.at_layer and not vp.at_layer and vl.map.shape == (16, 16)
    zero_map = vl
    zero_map.map = np.zeros_like(vl.map)
    rgb = render(zero_map, scale_for(zero_map.map))
    assert np.allclose(rgb, np.repeat(grey(vl.image)[..., None], 3, -1))      # grey image shows through
    vp.map = np.zeros_like(vp.map)
    assert np.allclose(render(vp, scale_for(vp.map)), 1.0)                    # pixel map: on its own (white)
    half = render(viz.view(lay, 0), scale_for(viz.view(lay, 0).map), opacity=0.0)
    assert np.allclose(half, np.repeat(grey(vl.image)[..., None], 3, -1))     # opacity 0: only the image


def test_grid_layout_of_figure_3_1(image_attrs, tmp_path):
    model, x, pix, lay, sal = image_attrs
    pix0 = ak.explain(model, x, "integrated_gradients", target=0, steps=8)
    lay0 = ak.explain(model, x, "integrated_gradients", target=0, layer="features.2", steps=8)
    fig = viz.plot_grid([pix, pix0, lay, lay0], rows=("layer", "target"), cols="method", index=0,
                        path=tmp_path / "grid.png")
    grid_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(grid_axes) == 4 * 2                         # 4 rows (layer x class) x (input + 1 method)
    titles = {ax.get_title() for ax in grid_axes}
    assert "integrated_gradients" in titles
    labels = {ax.get_ylabel() for ax in grid_axes}
    assert {"pixels / 1", "pixels / 0", "features.2 / 1", "features.2 / 0"} <= labels
    with pytest.raises(ValueError, match="two maps fall in the cell"):
        viz.plot_grid([pix, pix0], rows="method", cols="layer")
    shared = viz.plot_grid([pix, pix0], rows="method", cols="target", scale="row")
    lo, hi = _colorbar_limits(shared)
    assert lo == pytest.approx(-hi)


def test_player_boundaries_are_drawn(image_attrs):
    _, x, pix, _, _ = image_attrs
    players = (torch.arange(16) // 4).view(1, 16) + 4 * (torch.arange(16) // 4).view(16, 1)
    a = ak.Attribution(values=pix.values, method="kernel_shap", target=pix.target, inputs=x, outputs=pix.outputs,
                       players=players.expand(2, 16, 16).clone())
    v = viz.view(a, 0)
    assert v.edges is not None and v.edges.sum() == 2 * 3 * 16 - 9        # 3 lines each way, 9 crossings
    fig = viz.plot(a, 0)
    assert any(ax.collections for ax in fig.axes)                         # the boundary lines


def test_plot_rejects_bad_input(image_attrs):
    _, _, pix, _, _ = image_attrs
    with pytest.raises(ValueError, match="out of range"):
        viz.plot(pix, 5)
    with pytest.raises(ValueError, match="mode"):
        viz.plot(pix, 0, mode="bright")
    with pytest.raises(TypeError, match="Attribution"):
        viz.plot(torch.zeros(1, 3, 4, 4))


# ------------------------------------------------------------------------------------------ evaluation
def test_curves_and_cascade(image_attrs, tmp_path):
    _, _, pix, _, sal = image_attrs

    class Curve:       # the shape of attrkit.metrics' MetricResult
        def __init__(self, y, method):
            self.details = {"curves": y, "fractions": np.linspace(0, 1, y.shape[1]), "method": method}
            self.score = float(np.trapezoid(y.mean(0), np.linspace(0, 1, y.shape[1])))

    fig = viz.plot_curves([Curve(np.array([[1, .5, .2, 0], [1, .7, .3, .1]]), "a"), Curve(np.ones((2, 4)), "b")],
                          path=tmp_path / "c.png")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("a (area 0.") and legend[1] == "b (area 1.000)"
    with pytest.raises(ValueError, match="x values"):
        viz.plot_curves({"bad": (np.arange(3), np.arange(4))})
    fig = viz.plot_cascade([pix, sal, np.zeros((16, 16))], ["original", "top", "all"], [1.0, 0.4, float("nan")])
    assert [ax.get_xlabel() for ax in fig.axes[:3]] == ["1.00", "0.40", ""]
    with pytest.raises(ValueError, match="labels"):
        viz.plot_cascade([pix, sal], ["one"])


# ------------------------------------------------------------------------------------------ tabular
def test_tabular_plots_and_waterfall_adds_up(tmp_path):
    model = tiny_mlp(n_in=5, classes=3)
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    a = ak.explain(model, x, "integrated_gradients", target=2, steps=64)
    names = ["age", "bmi", "bp", "s1", "s2"]
    viz.plot_importance(ak.global_importance(a), names=names, path=tmp_path / "imp.png")
    viz.plot_beeswarm(a, names=names, path=tmp_path / "bee.png")
    viz.plot(a, 3, feature_names=names, path=tmp_path / "bars.png")
    fig = viz.plot_waterfall(a, 3, names, model=model, top=3)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    pred = float(a.outputs[3, 2])
    base = float(model(torch.zeros(1, 5)).detach()[0, 2])
    assert widths[0] == pytest.approx(base, abs=1e-6)                     # starts at f(baseline)
    assert widths[-1] == pytest.approx(pred, abs=1e-6)                    # ends at the prediction
    assert base + sum(widths[1:-1]) == pytest.approx(pred, abs=1e-3)      # IG is complete: no gap bar
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "2 other features" in labels and not any("not explained" in t for t in labels)
    sal = ak.explain(model, x, "saliency", target=2)                       # not complete: the gap is shown
    labels = [t.get_text() for t in viz.plot_waterfall(sal, 3, names, base=base).axes[0].get_yticklabels()]
    assert any("not explained" in t for t in labels)
    labels = [t.get_text() for t in viz.plot_waterfall(sal, 3, names).axes[0].get_yticklabels()]
    assert labels[0] == "base value (implied: prediction - sum of contributions)"
    with pytest.raises(ValueError, match="names"):
        viz.plot_importance(ak.global_importance(a), names=["a"])
