"""Shapley values: closed forms, textbook games, Theorem 2.32 against its definition, the four axioms on a
trained CNN, and the refusal of exact values for too many players."""
import itertools
import math

import pytest
import torch
from torch import nn

import attrkit as ak
from conftest import record
from attrkit.games import exact_from_values, features, superpixels


# ----------------------------------------------------------------------------------- closed forms
@pytest.fixture
def linear_setup():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    r = torch.randn(6, dtype=torch.float64)
    groups = [[0, 1], [2], [3, 4, 5]]
    w = lin.weight[1].detach()
    expect = torch.stack([torch.stack([(w[g] * (x[i, g] - r[g])).sum() for g in groups]) for i in range(3)])
    return lin, x, r, features(x, groups=groups), expect


@pytest.mark.parametrize("method, opts, exact", [
    ("shapley", {}, True),
    ("kernel_shap", {"n_samples": 6}, True),                   # 2^3 - 2 = 6 coalitions: all of them
    ("lime", {"n_samples": 8, "kernel_width": 1e4}, False),    # all 2^3 coalitions, (nearly) flat kernel
    ("shapley_sampling", {"n_samples": 20}, True),               # 3 players: every stratum enumerated
])
def test_linear_model_equals_w_times_x_minus_r(linear_setup, method, opts, exact):
    lin, x, r, players, expect = linear_setup
    a = ak.explain(lin, x, method, target=1, players=players, masker=r, spread="share", **opts)
    assert torch.allclose(a.info["player_values"], expect, atol=1e-10)
    assert a.info["exact"] is exact
    # values spread back: each feature gets its player's value / player size; sums per player recover it
    per_player = torch.zeros(3, 3, dtype=torch.float64).index_add_(1, players[0], a.values)
    assert torch.allclose(per_player, expect, atol=1e-10)
    if method == "lime":
        assert torch.allclose(a.info["r2"], torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("method", ["kernel_shap", "shapley_sampling"])
def test_sampled_estimators_exact_on_additive_games(method):
    """Every coalition design recovers an additive game exactly, sampled or not."""
    torch.manual_seed(0)
    lin = nn.Linear(10, 1).double()
    x = torch.randn(2, 10, dtype=torch.float64)
    a = ak.explain(lin, x, method, n_samples=60, seed=1)
    assert a.info["exact"] is False
    assert torch.allclose(a.info["player_values"], lin.weight.detach() * x, atol=1e-10)


def test_exact_matches_its_definition_by_permutations():
    """Theorem 2.32 in O(l 2^l) equals the mean marginal contribution over all l! orderings."""
    torch.manual_seed(1)
    l = 5
    v = torch.randn(1 << l, 2, dtype=torch.float64)
    phi = exact_from_values(v, l)
    brute = torch.zeros(l, 2, dtype=torch.float64)
    for perm in itertools.permutations(range(l)):
        code = 0
        for p in perm:
            brute[p] += v[code | (1 << p)] - v[code]
            code |= 1 << p
    assert torch.allclose(phi, brute / math.factorial(l), atol=1e-12)


def _voting(weights, quota):
    w = torch.tensor(weights, dtype=torch.float64)
    return lambda x: (x.double() @ w >= quota - 1e-9).double()


def test_weighted_voting_game():
    """[3; 2, 1, 1]: Shapley-Shubik index (2/3, 1/6, 1/6)."""
    a = ak.explain(_voting([2, 1, 1], 3), torch.ones(1, 3), "shapley")
    assert torch.allclose(a.info["player_values"][0], torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64))


def test_un_security_council():
    """5 permanent members with veto + 10 others, 9 votes needed: 421/2145 and 4/2145 (Shapley & Shubik 1954)."""
    a = ak.explain(_voting([7] * 5 + [1] * 10, 39), torch.ones(1, 15), "shapley")
    phi = a.info["player_values"][0]
    assert torch.allclose(phi[:5], torch.full((5,), 421 / 2145, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(phi[5:], torch.full((10,), 4 / 2145, dtype=torch.float64), atol=1e-12)
    assert a.info["n_evals"] == 2 ** 15 + 1


def test_product_game_with_zero_baseline():
    """v(S) = prod_{i in S} x_i with absent features 0: only the full coalition pays, so phi_i = prod(x) / l."""
    x = torch.tensor([[1.5, 2.0, -0.5, 3.0]], dtype=torch.float64)
    a = ak.explain(lambda t: t.prod(dim=1), x, "shapley", masker="zeros")
    assert torch.allclose(a.info["player_values"][0], torch.full((4,), -4.5 / 4, dtype=torch.float64))


# ------------------------------------------------------------------------------- trained CNN, axioms
# shapes_cnn: the zoo's CNN and 8 held-out images (conftest.py)


def test_axioms_on_trained_cnn(shapes_cnn):
    pytest.importorskip("skimage", reason="superpixels need scikit-image")
    model, xs = shapes_cnn
    x = xs[:1].clone()
    players = superpixels(x, n=10)
    l = int(players.max()) + 1
    assert 8 <= l <= 12
    a = ak.explain(model, x, "shapley", target=[1], players=players, all_classes=True, spread="share")
    phi, pv_all = a.info["player_values"][0], a.info["player_values_all"][0]
    # efficiency
    assert abs(float(phi.sum() - (a.info["full_value"][0] - a.info["base_value"][0]))) < 1e-5
    assert abs(float(a.values.sum()) - float(phi.sum())) < 1e-4
    # linearity: the game of out[:, 1] + 2 out[:, 3] has values phi_1 + 2 phi_3
    b = ak.explain(model, x, "shapley", target=lambda out: out[:, 1] + 2 * out[:, 3], players=players)
    assert torch.allclose(b.info["player_values"][0], pv_all[1] + 2 * pv_all[3], atol=1e-5)
    # dummy (carrier): a superpixel already equal to the reference changes nothing when masked
    x0 = torch.where(players.unsqueeze(1) == 2, torch.zeros(()), x)
    c = ak.explain(model, x0, "shapley", target=[1], players=players)
    assert abs(float(c.info["player_values"][0, 2])) < 1e-6
    # spread (shipped zoo with 1, 2 threads and mkldnn off; zoo retrained with 2 threads and seeds 1, 2): 8.0..61
    assert record("shapley_dummy_other_max", abs(float(c.info["player_values"][0].abs().max()))) > 1e-3


def test_symmetry_on_trained_cnn(shapes_cnn):
    """Mirror-image players of a mirror-symmetric game (symmetric image, f(x) + f(flip x)) get equal values."""
    pytest.importorskip("skimage", reason="superpixels need scikit-image")
    model, xs = shapes_cnn
    x = xs[1:2].clone()
    x = (x + x.flip(-1)) / 2
    left = superpixels(x[..., :32], n=5)[0]
    k = int(left.max()) + 1
    players = torch.cat([left, left.flip(-1) + k], dim=1).unsqueeze(0)     # player j <-> j + k under the mirror
    sym = lambda t: model(t) + model(t.flip(-1))
    a = ak.explain(sym, x, "shapley", target=0, players=players)
    phi = a.info["player_values"][0]
    assert torch.allclose(phi[:k], phi[k:], atol=1e-5)
    # spread (shipped zoo with 1, 2 threads and mkldnn off; zoo retrained with 2 threads and seeds 1, 2): 1.6..7.1
    assert record("shapley_symmetry_max", float(phi.abs().max())) > 1e-3


def test_kernel_shap_efficiency_exact_when_sampled(shapes_cnn):
    model, xs = shapes_cnn
    x = xs[:2]
    a = ak.explain(model, x, "kernel_shap", players=ak.games.grid(x, (3, 4)), n_samples=300, seed=0)
    assert a.info["exact"] is False and (a.info["std_err"] > 0).all()
    gap = a.info["player_values"].sum(1) - (a.info["full_value"] - a.info["base_value"])
    assert float(gap.abs().max()) < 1e-9


def test_exact_refuses_too_many_players():
    x = torch.randn(1, 30)
    with pytest.raises(ValueError, match=r"2\^30 coalitions: 1,073,741,824 model evaluations.*kernel_shap"):
        ak.explain(nn.Linear(30, 2), x, "shapley")
    a = ak.explain(nn.Linear(30, 2), x, "kernel_shap", n_samples=200)    # the suggested alternative runs
    assert a.info["player_values"].shape == (1, 30)
