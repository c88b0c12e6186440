"""Layer games (thesis section 3.3): mask cells or channels of a layer's activation and run only the part of the
network after the layer; same values as a full forward with a replacing hook."""
import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.games import Game, layer_players
from attrkit.models import vgg


@pytest.fixture(scope="module")
def small_vgg():
    """A VGG11 layout (torchvision names) at 32 x 32 with 1/8 widths; the classifier is re-initialised with a
    larger spread so the outputs (and Shapley values) are not ~1e-8 as with VGG's N(0, 0.01) init."""
    model = vgg("vgg11", num_classes=10, in_size=32, width=0.125, fc_width=32, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    torch.manual_seed(0)
    return model.eval(), torch.rand(2, 3, 32, 32)


def _pair(model, x, method, layer, **opts):
    head = ak.explain(model, x, method, layer=layer, seed=0, **opts)
    full = ak.explain(model, x, method, layer=layer, seed=0, head_only=False, **opts)
    return head, full


@pytest.mark.parametrize("method, layer, opts", [
    ("shapley", "features.10", {"players": layer_players(torch.zeros(2, 32, 4, 4), cells=2)}),
    ("kernel_shap", "features.10", {"n_samples": 120}),                     # 16 cells of 4 x 4
    ("shapley_sampling", "features.7", {"players": "channels", "n_samples": 150}),
    ("feature_ablation", "features.14", {"masker": "mean"}),
    ("occlusion", "features.9", {"window": 2, "stride": 1}),
])
def test_head_only_equals_full_network(small_vgg, method, layer, opts):
    model, x = small_vgg
    head, full = _pair(model, x, method, layer, **opts)
    assert head.info["head_only"] is True and full.info["head_only"] is False
    assert head.layer == layer and head.values.shape == full.values.shape
    act = Game(model, x, layer=layer).base
    assert head.values.shape == act.shape
    assert torch.allclose(head.values, full.values, atol=1e-6, rtol=1e-4)
    assert float(head.values.abs().max()) > 1e-4
    assert head.heatmap().shape == (2, 32, 32)


def test_head_only_skips_the_layers_before(small_vgg):
    """The first convolution runs once per chunk of the inputs, not once per coalition."""
    model, x = small_vgg
    calls = []
    h = model.features[0].register_forward_hook(lambda m, a, o: calls.append(o.shape[0]))
    try:
        a = ak.explain(model, x, "shapley", layer="features.15")             # 2 x 2 cells: 16 coalitions
        head_rows = sum(calls)
        calls.clear()
        ak.explain(model, x, "shapley", layer="features.15", head_only=False)
        full_rows = sum(calls)
    finally:
        h.remove()
    assert a.info["n_players"].tolist() == [4, 4]
    assert head_rows <= 3 * x.shape[0] < full_rows
    assert full_rows >= 2 * 16


class Residual(nn.Module):
    """A skip connection reads a value from before the layer: the head needs it as an extra input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        s = self.stem(x)
        y = self.act(self.conv(s))
        return self.fc(self.pool(y + s).flatten(1))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if h.sum() > 0:
            h = h * 2
        return self.fc(h.flatten(1))


def test_split_with_skip_connection():
    torch.manual_seed(0)
    model, x = Residual().eval(), torch.rand(2, 3, 6, 6)
    head, full = _pair(model, x, "shapley", "act", players=layer_players(torch.zeros(2, 4, 6, 6), cells=(2, 3)))
    assert head.info["head_only"] is True
    assert torch.allclose(head.values, full.values, atol=1e-6)


def test_fallback_to_hook_when_the_graph_cannot_be_split():
    torch.manual_seed(0)
    model, x = Branchy().eval(), torch.rand(2, 3, 4, 4)
    a = ak.explain(model, x, "shapley", layer="conv", players="channels")
    assert a.info["head_only"] is False and "split_note" in a.info
    # the hook path is the definition: v(S) = model with the layer's output masked
    g = Game(model, x, layer="conv", players="channels")
    z = torch.tensor([[True, False, True, True]])
    act = g.base[:1] * z.view(1, 4, 1, 1)
    h = model.conv.register_forward_hook(lambda m, i, o: act)
    try:
        with torch.no_grad():
            expect = model(x[:1])[0, g.problem.target.classes[0]]
    finally:
        h.remove()
    assert torch.allclose(g(z, torch.tensor([0]))[0, 0], expect.double(), atol=1e-6)
    with pytest.raises(ValueError, match="cannot evaluate only the part"):
        ak.explain(model, x, "shapley", layer="conv", players="channels", head_only=True)


def test_layer_all_classes_and_channels(small_vgg):
    model, x = small_vgg
    a = ak.explain(model, x, "kernel_shap", layer="features.15", all_classes=True, n_samples=14)
    assert a.info["player_values_all"].shape == (2, 10, 4)
    assert a.info["exact"] is True                                           # 2^4 - 2 = 14 coalitions
    b = ak.explain(model, x, "shapley", layer="features.15", target=a.target)
    # the same 16 coalitions, evaluated in float32 in different batches (rounding differs by CPU kernel): 1e-5
    assert torch.allclose(a.info["player_values"], b.info["player_values"], rtol=1e-5, atol=1e-6)
    c = ak.explain(model, x, "feature_ablation", layer="features.15", players="channels")
    assert c.info["n_players"].tolist() == [64, 64] and c.values.shape == (2, 64, 2, 2)
