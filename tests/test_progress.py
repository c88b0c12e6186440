"""One progress bar per call: the engines' loops share the call's bar (never several restarting from 0), and
progress=None shows nothing off a terminal."""
import pytest
import torch

import attrkit as ak
import attrkit.progress as P


class Counting(P.tqdm):
    made: list = []

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        Counting.made.append(self)


@pytest.fixture
def bars(monkeypatch):
    Counting.made = []
    monkeypatch.setattr(P, "tqdm", Counting)
    return Counting.made


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("method, opts", [
    ("kernel_shap", {"n_samples": 40, "players": "grid"}),          # a game per sample: 3 loops, one bar
    ("integrated_gradients", {"steps": 8, "batch_size": 4}),        # chunks of the quadrature
    ("score_cam", {"layer": "2"}),                                  # perturbation CAM
])
def test_one_bar_per_call_that_fills_once(bars, method, opts):
    model, x = _cnn(), torch.rand(3, 3, 8, 8)
    opts = dict(opts)
    if opts.get("players") == "grid":
        opts["players"] = ak.grid(x, 2)
    bs = opts.pop("batch_size", None)
    a = ak.explain(model, x, method, target=0, progress=True, batch_size=bs, seed=0, **opts)
    assert len(bars) == 1, [b.desc for b in bars]
    b = bars[0]
    assert b.n == b.total > 0                       # advanced to its end, never restarted
    if method == "kernel_shap":
        assert b.n == a.info["n_evals"] - len(x)    # every model row of the games, counted once
    elif method == "integrated_gradients":
        assert b.n == len(x) * 8                    # every quadrature point
    else:
        assert b.n == len(x) * 4                    # score-cam: one masked row per channel of the layer


def test_no_bar_off_a_terminal_and_with_false(bars, monkeypatch):
    model, x = _cnn(), torch.rand(2, 3, 8, 8)
    monkeypatch.setattr(P, "on_terminal", lambda: False)
    ak.explain(model, x, "kernel_shap", players=ak.grid(x, 2), n_samples=20, seed=0)
    ak.explain(model, x, "integrated_gradients", steps=4, progress=False)
    assert bars == []
    monkeypatch.setattr(P, "on_terminal", lambda: True)      # a terminal: one bar, shown after DELAY seconds
    ak.explain(model, x, "kernel_shap", players=ak.grid(x, 2), n_samples=20, seed=0)
    assert len(bars) == 1 and bars[0].delay == P.DELAY
    with pytest.raises(TypeError, match="progress"):
        ak.explain(model, x, "saliency", progress="yes")


def test_a_metric_and_the_explanations_inside_it_share_one_bar(bars):
    from attrkit import metrics as M
    model, x = _cnn(), torch.rand(2, 3, 8, 8)
    M.cascading_randomisation(model, x, "integrated_gradients", target=0, steps=4, progress=True)
    assert len(bars) == 1, [b.desc for b in bars]
    assert bars[0].n == bars[0].total > 0


def test_one_bar_per_experiment(bars):
    """An experiment of attrkit.experiments (several explain calls and metrics) shows one bar, not one per call."""
    from attrkit import experiments
    experiments.reference_choice_table(n=2, baselines=("zeros", "blur"), steps=4, progress=True)
    assert len(bars) == 1 and bars[0].desc.startswith("attrkit reference_choice_table"), [b.desc for b in bars]
    assert bars[0].n == bars[0].total > 0
