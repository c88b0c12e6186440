"""Receptive-field evaluation of image games (attrkit.games.local): the plan must give what the whole network
gives, for every kind of local layer, masker and segmentation, and refuse what it cannot do."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak
from attrkit.games.game import Game
from attrkit.games.local import covering_family, local_chain
from attrkit.models import SmallCNN, bench_cnn, vgg


def _photo(n=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def _coalitions(l, b=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(b, l, generator=g) < torch.rand(b, 1, generator=g)
    z[0], z[1] = True, False
    return z


class Odd(nn.Module):
    """Strided reflect-padded conv, BatchNorm (eval), dilation, GELU, ceil-mode average pooling, 'same' padding,
    adaptive pooling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8), nn.LeakyReLU(0.1),
            nn.Conv2d(8, 8, 3, dilation=2, padding=2), nn.GELU(),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Conv2d(8, 16, 3, padding="same"), nn.ReLU(), nn.AdaptiveAvgPool2d(5))
        self.fc = nn.Linear(16 * 25, 4)
        with torch.no_grad():
            self.body[1].running_mean.uniform_(-0.2, 0.2)
            self.body[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


class Functional(nn.Module):
    """Pointwise functions called as functions and methods, and a non-local GroupNorm that ends the chain."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c1, self.c2 = nn.Conv2d(3, 6, 5, padding=2), nn.Conv2d(6, 6, 3, padding=1)
        self.norm, self.c3 = nn.GroupNorm(2, 6), nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.sigmoid(F.relu(self.c1(x)))
        h = self.c2(h).tanh()
        h = F.relu(self.c3(self.norm(h)))
        return self.fc(h.mean((2, 3)))


class Normalised(nn.Module):
    """A normalisation inside the model (constants from buffers and numbers) before the convolutions."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3))

    def forward(self, x):
        return self.net((1.0 - (x - self.mean)) / self.std * 2.0)


MODELS = {
    "normalised": (Normalised, 32),
    "bench_cnn": (lambda: bench_cnn(), 64),
    "small_cnn": (lambda: SmallCNN(in_size=64), 64),
    "vgg11_small": (lambda: vgg("vgg11", num_classes=6, in_size=32, width=0.125), 32),
    "odd": (Odd, 40),
    "functional": (Functional, 32),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("masker", ["zeros", "blur"])
def test_plan_reproduces_the_whole_network(name, masker):
    make, size = MODELS[name]
    model = make().eval()
    x = _photo(2, size)
    players = torch.stack([ak.grid(x[:1], 4)[0], ak.grid(x[:1], 3)[0]])     # 16 and 9 players
    fast = Game(model, x, players, masker, local=True)
    slow = Game(model, x, players, masker, local=False)
    z = torch.cat([_coalitions(16, 96), _coalitions(16, 96, seed=2)])
    rows = torch.cat([torch.zeros(96, dtype=torch.long), torch.ones(96, dtype=torch.long)])
    a, b = fast(z, rows), slow(z, rows)
    assert all(p is not None for p in fast._planner.plans.values()) and len(fast._planner.plans) == 2
    scale = b.abs().max()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(scale)), float((a - b).abs().max())
    assert fast.n_evals == slow.n_evals


def test_superpixels_channel_players_and_mean_masker():
    model = bench_cnn().eval()
    x = _photo(1, 64, seed=3)
    seg = ak.grid(x, 3)[0]
    labels = torch.stack([seg, seg + 9, seg]).unsqueeze(0)            # [1, 3, H, W]: channels 0/2 and 1 apart
    fast = Game(model, x, labels, "mean", local=True)
    slow = Game(model, x, labels, "mean", local=False)
    z = _coalitions(18, 128)
    rows = torch.zeros(128, dtype=torch.long)
    assert torch.allclose(fast(z, rows), slow(z, rows), rtol=1e-5, atol=1e-6)


def test_exact_shapley_uses_the_plan_by_itself_and_agrees():
    model = bench_cnn().eval()
    x = _photo(1, 64, seed=4)
    players = ak.grid(x, 3)                                            # 9 players: 512 coalitions
    on = ak.explain(model, x, "shapley", players=players, progress=False)
    off = ak.explain(model, x, "shapley", players=players, progress=False, local=False)
    assert on.info["local"]["cut"] == "features.9" and on.info["local"]["family_rows"][0] < 512
    assert "local" not in off.info
    torch.testing.assert_close(on.info["player_values"], off.info["player_values"], rtol=1e-5, atol=1e-7)
    assert on.info["n_evals"] == off.info["n_evals"]
    every = ak.explain(model, x, "shapley", players=players, progress=False, all_classes=True)
    every_off = ak.explain(model, x, "shapley", players=players, progress=False, all_classes=True, local=False)
    assert "local" in every.info and every.info["player_values_all"].shape == (1, 10, 9)
    torch.testing.assert_close(every.info["player_values_all"], every_off.info["player_values_all"],
                               rtol=1e-5, atol=1e-7)


def test_automatic_choice_skips_small_calls_and_linear_models():
    model = bench_cnn().eval()
    x = _photo(1, 64)
    g = Game(model, x, ak.grid(x, 2), local=None)
    g(_coalitions(4, 16), torch.zeros(16, dtype=torch.long))
    assert g._planner is None                                          # 16 coalitions: never worth a plan
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 2))
    assert local_chain(lin) is None


def test_refusals_name_the_reason():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            if x.sum() > 0:              # data-dependent control flow: not traceable
                return self.c(x).mean((2, 3))
            return -self.c(x).mean((2, 3))

    x = _photo(1, 16)
    z = _coalitions(4, 8)
    rows = torch.zeros(8, dtype=torch.long)
    branchy = Branchy()
    with pytest.raises(ValueError, match="no traceable chain"):
        Game(branchy, x, ak.grid(x, 2), local=True)(z, rows)
    big, zeros = _coalitions(4, 300), torch.zeros(300, dtype=torch.long)
    torch.testing.assert_close(Game(branchy, x, ak.grid(x, 2))(big, zeros),
                               Game(branchy, x, ak.grid(x, 2), local=False)(big, zeros))
    table = torch.randn(2, 6)
    with pytest.raises(ValueError, match="not images"):
        Game(nn.Linear(6, 2), table, local=True)(_coalitions(6, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="layer game"):
        Game(bench_cnn(), _photo(1, 64), "cells", layer="features.4", local=True)(
            _coalitions(32 * 32, 2)[:, :1024], torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="local must be"):
        Game(bench_cnn(), _photo(1, 64), ak.grid(_photo(1, 64), 2), local="yes")


def test_training_mode_batchnorm_is_not_local():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten())
    m.train()
    chain = local_chain(m)
    assert [type(s.module).__name__ if s.module is not None else "pw" for s in chain.steps] == ["Conv2d"]
    m.eval()
    assert len(local_chain(m).steps) == 4


@pytest.mark.parametrize("seed", range(4))
def test_covering_family_shows_every_pattern(seed):
    rng = np.random.default_rng(seed)
    l = 14
    sets = [sorted(rng.choice(l, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(40)]
    fam = covering_family(sets, l)
    for s in sets:
        codes = {tuple(r) for r in fam[:, s].tolist()}
        assert len(codes) == 1 << len(s)
    assert fam.shape[0] < sum(1 << len(s) for s in sets)


def test_covering_family_of_disjoint_pairs_is_small():
    fam = covering_family([[0, 1], [2, 3], [4, 5]], 6)
    assert fam.shape[0] == 4                                            # the lower bound 2^2
    for s in ([0, 1], [2, 3], [4, 5]):
        assert {tuple(r) for r in fam[:, s].tolist()} == set(itertools.product([False, True], repeat=2))


def test_plans_beyond_a_quarter_of_the_budget_are_forgotten():
    model = bench_cnn().eval()
    x = _photo(3, 64, seed=5)
    players = ak.grid(x, 3)
    fast = Game(model, x, players, local=True)
    z = _coalitions(9, 40)
    one = lambda r: torch.full((40,), r, dtype=torch.long)
    a0 = fast(z, one(0))
    table = fast._planner.plans[0].table
    fast._planner.budget = int(6 * table.numel() * table.element_size())     # room for one table
    a1, a2 = fast(z, one(1)), fast(z, one(2))
    assert [r for r, p in fast._planner.plans.items() if p is not None] == [2]
    assert len(fast.local_info()["local"]["family_rows"]) == 3
    slow = Game(model, x, players, local=False)
    for r, a in enumerate((a0, a1, a2)):
        torch.testing.assert_close(a, slow(z, one(r)), rtol=1e-5, atol=1e-7)


def test_chain_goes_through_a_normalisation_inside_the_model():
    steps = local_chain(Normalised().eval()).steps
    assert len(steps) == 9 and type(steps[4].module).__name__ == "Conv2d"
