"""How many forward passes DeepLIFT costs, counted at the model's first layer: the caller's pass on the inputs,
one reference pass and one pass with the rules (then one backward). A reference shared by every row (a constant,
"zeros") runs once per chunk, not once per row, with the same values as row-by-row references.
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
