"""The receptive-field plan's cost model (attrkit.games.local) against the plain whole network: on a ResNet-like
net the local chain ends at the stem (the first skip connection), whose cut saves ~6 % of the multiply-adds;
the planner must keep the whole network there (issue 19: such a cut ran 1.6x slower) and say why."""
import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak
from attrkit.games.game import Game


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18's layout (7x7 stem, max pooling, four stages of two basic blocks, downsampling shortcuts)."""

    def __init__(self, width=64, classes=10):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        stages, cin = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stages.append(nn.Sequential(Block(cin, c, 1 if i == 0 else 2), Block(c, c, 1)))
            cin = c
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.layers(x).mean((2, 3)))


def _setup(n=64):
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    z = torch.rand(n, 16, generator=g) < 0.5
    return ResNet18().eval(), x, z, torch.zeros(n, dtype=torch.long)


def _planner(game):
    from attrkit.games.local import LocalPlanner
    return LocalPlanner(game.problem, game.base, game.players, game.references, game.chunk)


def test_resnet_stem_cut_is_not_cheaper_than_the_whole_network():
    """Exact Shapley over 12 players asks 4,096 coalitions of one sample: the stem cut (the only one: the chain
    ends at the first skip connection) saves ~5 % of the multiply-adds, so the whole network runs."""
    model, x, _, _ = _setup()
    game = Game(model, x, ak.grid(x, cells=4))
    planner = _planner(game)
    assert planner.why_not == "" and str(planner.chain.steps[-1].node.target) == "pool"
    assert planner.plan(0, 4096) is None and planner.built == []
    choice = planner.choices[0]
    assert choice["plan"] == "whole network" and choice["coalitions"] == 4096
    # ResNet-18's layout at 32 px: ~37.5 M multiply-adds per row (torch's count)
    assert 3.0e7 < choice["whole_macs"] / 4096 < 4.5e7
    assert 0.9 * choice["whole_macs"] < choice["estimated_macs"] <= choice["whole_macs"]
    assert "after pool" in choice["why"] and "10%" in choice["why"]
    forced = planner.plan(0, 4096, force=True)          # local=True still builds it (and it is exact)
    assert forced is not None and forced.cut == "pool"
    assert planner.choices[0]["estimated_macs"] > 0.9 * planner.choices[0]["whole_macs"]


def test_forced_stem_plan_gives_the_whole_networks_values():
    model, x, z, rows = _setup()
    forced = Game(model, x, ak.grid(x, cells=4), local=True)
    got = forced(z, rows)
    info = forced.local_info()
    assert info["local"]["cut"] == "pool"              # the chain stops at the first skip connection
    assert info["local_choice"][0]["plan"] == "receptive-field plan cut after pool"
    want = Game(model, x, ak.grid(x, cells=4), local=False)(z, rows)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * float(want.abs().max()))


def test_a_plan_that_pays_reports_its_estimate_below_the_whole_network():
    from attrkit.models import bench_cnn
    torch.manual_seed(0)
    model = bench_cnn().eval()
    g = torch.Generator().manual_seed(1)
    x = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear", align_corners=False)
    z = torch.rand(512, 16, generator=g) < 0.5
    game = Game(model, x, ak.grid(x, cells=(2, 8)))
    game(z, torch.zeros(512, dtype=torch.long))
    (choice,) = game.local_info()["local_choice"]
    assert choice["plan"].startswith("receptive-field plan cut after")
    assert choice["estimated_macs"] <= 0.9 * choice["whole_macs"]


def test_uncountable_network_keeps_the_whole_network(monkeypatch):
    from attrkit.games import local
    monkeypatch.setattr(local.LocalPlanner, "whole_macs", lambda self, row: float("nan"))
    model, x, _, _ = _setup()
    planner = _planner(Game(model, x, ak.grid(x, cells=4)))
    assert planner.plan(0, 4096) is None
    assert planner.choices[0]["plan"] == "whole network" and "could not be counted" in planner.choices[0]["why"]
    assert planner.plan(0, 4096, force=True) is not None      # local=True: built all the same
