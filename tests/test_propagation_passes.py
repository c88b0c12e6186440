"""How many forward passes the rule methods cost, counted at the model's first layer.

DeepLIFT: the caller's pass on the inputs, one reference pass and one pass with the rules (then one backward), at
the input or at a layer (whose activations for input and reference come from those two passes). A reference
shared by every row (a constant, "zeros") runs once per chunk, not once per row, with the same values as
row-by-row references.

LRP, at the input or at a layer: the minimum is two passes over the inputs, plus a one-row memory probe when no
batch size is given. ``explain`` runs the model once to resolve the target and keep ``f(x)`` (the relevance the
map must sum to); the rules then need one forward pass recording the graph for the one backward pass, and that
same pass gives the activation at the layer (R = a * s) and the gradient's shape; the probe measures one row's
activations to size chunks under ``max_memory``. Before this was locked, LRP at a layer ran 6 passes (4 with
``batch_size``): a second probe without gradients, a one-row pass for the layer's shape and a last pass for the
layer's activation.
"""
import torch
from torch import nn

import attrkit as ak


class Res(nn.Module):
    """A reused ReLU, a max pool and a residual addition (the resnet stem and block, small)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        h = self.pool(self.relu(self.conv(x)))
        h = self.relu(self.conv2(h) + h)
        return self.head(h.flatten(1))


def counted(model):
    calls = []
    model.conv.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    return calls


def test_deeplift_runs_three_forward_passes_and_a_shared_reference_once():
    model = Res().eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    calls = counted(model)
    a = ak.explain(model, x, "deeplift", baseline=0.3, target=2, batch_size=6)
    assert calls == [6, 1, 6]              # f(x), the reference (one row for all), the pass with the rules
    assert a.info["n_evals"] == 6 + 1 + 6
    calls.clear()
    per_row = 0.3 + 0.1 * torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ak.explain(model, x, "deeplift", baseline=per_row, target=2, batch_size=6)
    assert calls == [6, 6, 6]
    calls.clear()
    ak.explain(model, x, "deeplift", baseline=0.3, target=2, batch_size=4)
    assert calls == [4, 2, 1, 4, 1, 2]     # in chunks of 4: one reference row per chunk
    calls.clear()
    a = ak.explain(model, x, "deeplift", baseline=0.3, target=2, layer="conv2", batch_size=6)
    assert calls == [6, 1, 6]              # at a layer too: the activations come from those passes
    assert a.info["n_evals"] == 6 + 1 + 6


def test_a_shared_reference_gives_the_values_of_row_by_row_references():
    model = Res().eval()
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    shared = ak.explain(model, x, "deeplift", baseline=0.3, target=[0, 1, 2, 3, 4])
    # one more row with another reference: the references differ, so every row is run
    x7 = torch.cat([x, x[:1]])
    base = torch.full_like(x7, 0.3)
    base[-1] = 0.7
    rows = ak.explain(model, x7, "deeplift", baseline=base, target=[0, 1, 2, 3, 4, 0])
    assert rows.info["n_evals"] == 3 * 6
    diff = (shared.values - rows.values[:5]).abs().max() / rows.values.abs().max()
    assert float(diff) < 1e-6
    assert torch.allclose(shared.info["f_baseline"], rows.info["f_baseline"][:5], rtol=1e-6, atol=1e-7)
    assert float(shared.info["completeness_gap"].max()) < 1e-5


def test_lrp_at_the_input_and_at_a_layer_runs_two_passes_and_a_one_row_probe():
    model = Res().eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    calls = counted(model)
    for layer in (None, "conv2", "head"):
        calls.clear()
        a = ak.explain(model, x, "lrp", target=2, layer=layer, batch_size=6)
        assert calls == [6, 6], (layer, calls)        # f(x); the pass with the rules (activation and gradient)
        assert a.info["n_evals"] == 6 + 6
        calls.clear()
        ak.explain(model, x, "lrp", target=2, layer=layer)
        assert calls == [6, 1, 6], (layer, calls)     # the same and the memory probe (one row)
        calls.clear()
        ak.explain(model, x, "lrp", target=2, layer=layer, batch_size=4)
        assert calls == [4, 2, 4, 2], (layer, calls)   # both passes in chunks of 4
    # the activation comes from the pass with the rules: LRP-0 (the plain gradient through ReLU, pooling and sums)
    # at a layer is the layer's activation x gradient, computed by input_x_gradient with passes of its own
    lrp0 = ak.explain(model, x, "lrp", target=2, layer="conv2", rule="zero", batch_size=4).values
    ixg = ak.explain(model, x, "input_x_gradient", target=2, layer="conv2").values
    assert float((lrp0 - ixg).abs().max() / ixg.abs().max()) < 1e-5
