"""Figure layouts: plot_grid wraps one varying key into a grid with an unclipped legend and keeps dict labels;
plot_panels gives each unit its own axis (the layer-Shapley figure)."""
import pytest
import torch

import attrkit as ak

pytest.importorskip("matplotlib")


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    return model, torch.rand(1, 3, 12, 12)


def _inside(fig, artist) -> bool:
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    w, h = fig.canvas.get_width_height()
    return box.x0 >= -1 and box.x1 <= w + 1 and box.y0 >= -1 and box.y1 <= h + 1


def test_many_methods_one_class_make_a_grid_not_a_column_and_the_legend_fits():
    model, x = _setup()
    attrs = [ak.explain(model, x, m, target=0) for m in
             ("saliency", "input_x_gradient", "integrated_gradients", "guided_backprop", "deconvnet", "smoothgrad")]
    fig = ak.plot_grid(attrs)
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 7                                           # the input and six maps
    cols = {round(ax.get_position().x0, 3) for ax in maps}
    rows = {round(ax.get_position().y0, 3) for ax in maps}
    assert len(cols) >= 3 and len(rows) <= 3                        # near-square, not 7 rows of 1
    w, h = fig.get_size_inches()
    assert h < 1.5 * w
    assert _inside(fig, fig._supxlabel)                              # the legend is not clipped
    titles = {ax.get_title() for ax in maps}
    assert {"saliency", "smoothgrad(saliency)"} <= titles or "saliency" in titles
    tall = ak.plot_grid(attrs, wrap=False)                           # the old layout stays on request
    assert len({round(ax.get_position().y0, 3) for ax in tall.axes if ax.images}) == 6


def test_dict_form_keeps_labels_so_two_settings_of_one_method_do_not_collide():
    model, x = _setup()
    a = ak.explain(model, x, "integrated_gradients", target=0, steps=4)
    b = ak.explain(model, x, "integrated_gradients", target=0, steps=32)
    fig = ak.plot_grid({"IG, 4 steps": a, "IG, 32 steps": b})
    titles = [ax.get_title() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert "IG, 4 steps" in titles and "IG, 32 steps" in titles
    with pytest.raises(ValueError, match="two maps fall in the cell"):
        ak.plot_grid([a, b])


def test_panels_put_each_unit_on_its_own_axis():
    from attrkit.viz.curves import plot_panels
    rows = [{"players": "layer cells", "level": "layer", "seconds": 16.0, "rho": 1.0, "mass": 0.6},
            {"players": "pixel grid", "level": "pixel", "seconds": 1140.0, "rho": 0.4, "mass": 0.5}]
    fig = plot_panels(rows, ["seconds", "rho", "mass"], ("players", "level"))
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlim()[1] > 1140 and fig.axes[1].get_xlim()[1] < 5     # own scales
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["layer cells / layer", "pixel grid / pixel"]
