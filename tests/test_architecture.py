"""Issue 18's architecture figures, counted by ``tests/trace_calls.py``: how often one ``ak.explain`` call goes
back into a library module it has already been in (cross-module returns), and how many full forward passes
``lrp`` at a layer makes. Before the refactor (commit b3f39b2; SmallCNN, 16x16 inputs, 2 samples, layer
``features.5``, kernel_shap with n_samples=256): kernel_shap 567 calls in 21 modules with 371 cross-module
returns; lrp 351 calls in 20 modules with 139 cross-module returns and 6 forward passes (counted at the first
layer: f(x), two memory probes, the activation, the rules pass...). The refactor's bound: at most half the
returns; lrp: f(x), one memory probe (one row, without batch_size) and the pass with the rules."""
import os
import sys
import warnings

import torch
from torch import fx, nn

import attrkit as ak

sys.path.insert(0, os.path.dirname(__file__))
from trace_calls import forward_passes, kernel_shap_call, lrp_call, small_cnn, trace  # noqa: E402

BEFORE = {"kernel_shap": 371, "lrp": 139}


def _traced(make):
    model, x = small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make(model, x)()                      # imports and lazy set-up outside the count
        return trace(make(model, x)), model, x


def test_kernel_shap_at_a_layer_goes_back_and_forth_at_most_half_as_before():
    t, _, _ = _traced(kernel_shap_call)
    assert t["result"].values.shape == (2, 16, 8, 8)
    assert t["cross_returns"] <= BEFORE["kernel_shap"] // 2, t["return_pairs"]


def test_lrp_at_a_layer_goes_back_and_forth_at_most_half_as_before():
    t, model, x = _traced(lrp_call)
    assert t["cross_returns"] <= BEFORE["lrp"] // 2, t["return_pairs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert forward_passes(model, lrp_call(model, x)) == 3       # f(x), the one-row memory probe, the rules pass


def test_the_tracer_counts_calls_back_into_modules_already_visited():
    """A second ``prepare`` enters modules the first one visited: each of its cross-module calls counts."""
    import torch
    from attrkit.core.call import prepare
    model, x = torch.nn.Linear(3, 2), torch.ones(2, 3)
    once, twice = trace(lambda: prepare(model, x)), trace(lambda: (prepare(model, x), prepare(model, x)))
    assert twice["calls"] == 2 * once["calls"] and twice["modules"] == once["modules"]
    first_entries = once["modules"] - 1                    # prepare's own module is entered from the test
    assert twice["cross_returns"] == 2 * once["cross_returns"] + first_entries


class Skip(nn.Module):
    """A residual block after the layer: the part after ``conv2`` reads ``h`` from before it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        return self.fc(torch.relu(self.conv2(h) + h).mean((2, 3)))


def test_ablation_cam_splits_a_model_with_a_skip_connection_and_equals_a_loop_over_channels():
    """The one splitter (core.split) hands the part after the layer the earlier values it reads; Ablation-CAM used
    to fall back to full forward passes here."""
    model, x, t = Skip().eval(), torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(2)), [2, 0, 1]
    with torch.no_grad():
        h = torch.relu(model.conv1(x))
        acts = model.conv2(h)
        head = lambda a: model.fc(torch.relu(a + h).mean((2, 3))).gather(1, torch.tensor(t).view(-1, 1))
        y, drops = head(acts), []
        for c in range(acts.shape[1]):
            ablated = acts.clone()
            ablated[:, c] = 0
            drops.append((y - head(ablated)) / y)
        want = (torch.cat(drops, 1)[:, :, None, None] * acts).sum(1, keepdim=True)
    a = ak.explain(model, x, "ablation_cam", target=t, layer="conv2", relu=False)
    assert a.info["split"] == "tail"
    torch.testing.assert_close(a.values, want, rtol=1e-5, atol=1e-6)


def test_one_explain_call_traces_the_model_once(monkeypatch):
    """The splitter, the receptive-field plan and the canonizers read the call's one torch.fx trace."""
    traces = []
    original = fx.Tracer.trace
    monkeypatch.setattr(fx.Tracer, "trace", lambda self, root, *a, **k: traces.append(root) or original(self, root, *a, **k))
    model, x = Skip().eval(), torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    ak.explain(model, x, "ablation_cam", target=1, layer="conv2")
    assert traces == [model]
    traces.clear()
    model = Skip().eval()          # (a model split before keeps its split graphs across calls: a fresh one)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ak.explain(model, x, "kernel_shap", target=1, layer="conv2", n_samples=128, seed=0)
    assert traces == [model]
    traces.clear()
    torch.manual_seed(0)           # lrp: the BatchNorm canonizer and the rule binder read one trace
    bn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                       nn.Linear(4 * 36, 3)).eval()
    ak.explain(bn, x, "lrp", target=1)
    assert traces == [bn]


def test_every_library_module_stays_under_400_lines():
    """Issue 18: small modules with one job (the largest today is games/game.py at 393 lines)."""
    import pathlib
    root = pathlib.Path(ak.__file__).parent
    too_long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) >= 400}
    assert not too_long, f"modules of 400 lines or more: {too_long}"
