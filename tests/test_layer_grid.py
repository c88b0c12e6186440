"""players="grid:K" at a layer (Python and command line): the layer's cells grouped into K x K blocks (issue 17)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import attrkit as ak


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()


def test_layer_grid_players_equal_the_closed_form_of_a_linear_head():
    """After the layer the model is linear, so with zeros as the absent value each block's exact Shapley value is
    sum over its cells of w * activation."""
    m = _model()
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    a = ak.explain(m, x, method="shapley", layer="1", players="grid:2", masker="zeros", target=0)
    act = m[1](m[0](x)).detach()
    contrib = m[3].weight[0].detach().view(2, 4, 4) * act[0]
    blocks = torch.stack([contrib[:, i:i + 2, j:j + 2].sum() for i in (0, 2) for j in (0, 2)])
    torch.testing.assert_close(a.info["player_values"][0].float(), blocks, rtol=1e-5, atol=1e-6)
    b = ak.explain(m, x, method="shapley", layer="1", players=ak.grid(act, 2), masker="zeros", target=0)
    torch.testing.assert_close(a.info["player_values"], b.info["player_values"])   # ak.grid on the activation
    for bad, needle in (("grid:5", "K must be 1..4"), ("grid:x", "not a whole number"), ("hex:2", "grid:K")):
        with pytest.raises(ValueError, match=needle):
            ak.explain(m, x, method="shapley", layer="1", players=bad)


def test_layer_grid_from_the_command_line(tmp_path, capsys):
    PIL = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    from attrkit.cli import main
    x = ak.zoo.dataset("shapes_cnn").x[0]
    png = tmp_path / "shape.png"
    PIL.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(png)
    code = main(["explain", "--model", "shapes_cnn", "--input", str(png), "--method", "shapley", "--layer",
                 "features.6", "--option", "players=grid:2", "--out", str(tmp_path / "o"), "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    a = ak.Attribution.load(json.loads(out)["attribution"])
    assert a.layer == "features.6" and a.info["player_values"].shape == (1, 4) and a.info["exact"]
