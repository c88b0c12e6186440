"""Attribution carries feature and class names (from model.meta or explain's arguments) through plots, the
report and save/load; tabular plots label features in raw units when given raw values."""
import json
import re

import numpy as np
import pytest
import torch

import attrkit as ak


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    m.meta = {"classes": ["benign", "malignant"], "feature_names": ["radius", "texture", "area"]}
    return m.eval()


def test_names_from_model_meta_survive_select_part_save_and_load(tmp_path):
    model, x = _model(), torch.randn(4, 3)
    a = ak.explain(model, x, "saliency", target=1)
    assert a.class_names == ["benign", "malignant"] and a.feature_names == ["radius", "texture", "area"]
    assert a.select([0, 2]).class_names == a.class_names and a.select(1).feature_names == a.feature_names
    b = ak.Attribution.load(a.save(tmp_path / "a.npz"))
    assert b.class_names == a.class_names and b.feature_names == a.feature_names
    c = ak.explain(model, x, "saliency", target=1, class_names={0: "no", 1: "yes"}, feature_names=("a", "b", "c"))
    assert c.feature_names == ["a", "b", "c"]
    d = ak.Attribution.load(c.save(tmp_path / "c.npz"))
    assert d.class_names == {0: "no", 1: "yes"}                        # int keys come back as ints
    assert ak.explain(torch.nn.Linear(3, 2), x, "saliency").class_names is None
    with pytest.raises(TypeError, match="class_names"):
        ak.explain(model, x, "saliency", class_names="benign")


def test_plots_and_report_use_the_names(tmp_path):
    pytest.importorskip("matplotlib")
    from attrkit.viz.maps import view
    model, x = _model(), torch.randn(4, 3)
    a = ak.explain(model, x, "integrated_gradients", target=1)
    assert view(a, 0).target_label == "malignant"
    fig = ak.plot(a, 0)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any(lab.startswith("radius = ") for lab in labels)
    assert "malignant" in fig.axes[0].get_title()
    p = ak.report(a, tmp_path / "r.html")
    data = json.loads(re.search(r'id="attrkit-data">(.*?)</script>', p.read_text(), re.S).group(1)
                      .replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&"))
    assert data["samples"][0]["feature_names"] == ["radius", "texture", "area"]
    assert data["maps"][0]["target"] == "malignant"
    assert {c for c, _ in data["samples"][0]["top"]} == {"benign", "malignant"}


def test_waterfall_and_bar_labels_in_raw_units():
    pytest.importorskip("matplotlib")
    model = _model()
    mean, std = torch.tensor([14.0, 19.0, 650.0]), torch.tensor([3.5, 4.3, 350.0])
    raw = torch.tensor([[17.99, 10.38, 1001.0], [20.57, 17.77, 1326.0]])
    z = (raw - mean) / std                                                # the model reads standardised values
    a = ak.explain(model, z, "integrated_gradients", target=1)
    for how in (raw, lambda t: t * std + mean, raw.numpy()):
        fig = ak.plot_waterfall(a, 1, raw=how, top=3)
        labels = " ".join(t.get_text() for t in fig.axes[0].get_yticklabels())
        assert "area = 1326" in labels and "radius = 20.57" in labels, labels
    plain = " ".join(t.get_text() for t in ak.plot_waterfall(a, 1, top=3).axes[0].get_yticklabels())
    assert f"area = {float(z[1, 2]):.4g}" in plain                        # without raw=: the model's input
    assert ak.global_importance(a).names == ["radius", "texture", "area"]
    imp = " ".join(t.get_text() for t in ak.plot_importance(a).axes[0].get_yticklabels())
    assert "radius" in imp and "area" in imp
    bar = " ".join(t.get_text() for t in ak.plot(a, 0, raw=raw).axes[0].get_yticklabels())
    assert "texture = 10.38" in bar
    with pytest.raises(ValueError, match="raw values have 2 entries"):
        ak.plot_waterfall(a, 0, raw=np.zeros((2, 2)))
