"""Integrated Gradients through an affine first layer (``gradients.stem``): gradients stop at the stem's output
and are pulled back once per sample. The values must equal the per-point input gradients, and the shortcut must
be refused where it would be wrong (the input used elsewhere, a hook that changes the stem's output)."""
import pytest
import torch
from torch import nn

import attrkit as ak
import attrkit.gradients.methods as gm


def _cnn(inplace=False):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).eval()


class InputTwice(nn.Module):
    """The input reaches the output around the stem too (a global-mean feature)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1)) + x.mean((1, 2, 3))[:, None] ** 2


class ScaledFirst(nn.Module):
    """A non-module operation on the input before the first layer: no stem."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x * 2.0)).flatten(1))


def _ig(model, x, **kw):
    return ak.explain(model, x, method="integrated_gradients", target=1, steps=8, baseline="zeros",
                      progress=False, **kw)


def _without_stem(monkeypatch, model, x, **kw):
    with monkeypatch.context() as m:
        m.setattr(gm, "affine_stem", lambda problem: None)
        return _ig(model, x, **kw)


@pytest.mark.parametrize("inplace", [False, True])
def test_stem_gives_the_per_point_gradients(monkeypatch, inplace):
    model, x = _cnn(inplace), torch.rand(3, 3, 16, 16)
    a = _ig(model, x, batch_size=5)         # chunks cut across samples
    assert a.info["stem"] == "0"
    ref = _without_stem(monkeypatch, model, x, batch_size=5)
    assert ref.info["stem"] is None
    assert torch.allclose(a.values, ref.values, rtol=1e-5, atol=1e-7)
    assert (a.info["completeness_gap"] - ref.info["completeness_gap"]).abs().max() < 1e-5


def test_linear_stem_on_tabular_rows(monkeypatch):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    x = torch.randn(4, 6)
    a = _ig(model, x)
    assert a.info["stem"] == "0"
    assert torch.allclose(a.values, _without_stem(monkeypatch, model, x).values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [InputTwice, ScaledFirst])
def test_stem_refused_where_the_input_bypasses_it(monkeypatch, cls):
    torch.manual_seed(2)
    model, x = cls().eval(), torch.rand(2, 3, 16, 16)
    a = _ig(model, x)
    assert a.info["stem"] is None
    assert torch.allclose(a.values, _without_stem(monkeypatch, model, x).values)


def test_hook_that_changes_the_stem_output_refuses_and_an_observer_does_not(monkeypatch):
    model, x = _cnn(), torch.rand(2, 3, 16, 16)
    seen = []
    h = model[0].register_forward_hook(lambda m, a, out: seen.append(out.shape[0]))     # observes only
    try:
        assert _ig(model, x).info["stem"] == "0" and seen
    finally:
        h.remove()
    h = model[0].register_forward_hook(lambda m, a, out: out.clamp_(min=0.1))          # non-linear, in place
    try:
        a = _ig(model, x)
        assert a.info["stem"] is None
        assert torch.allclose(a.values, _without_stem(monkeypatch, model, x).values)
    finally:
        h.remove()
