"""KernelSHAP's sampling design (attrkit/games/kernel_strata.py): complementary pairs, stratified by size, drawn
without replacement; the facts its accuracy rests on, each checked in closed form."""
import math

import pytest
import torch

import attrkit as ak
from attrkit.games.kernel_shap import ALPHA, plan, size_mass
from attrkit.games.kernel_strata import Strata, _unrank

L = 30
torch.manual_seed(0)
A = torch.randn(L, dtype=torch.float64)
B = torch.randn(L, L, dtype=torch.float64)
B = (B + B.T) / 2
B.fill_diagonal_(0)
C = torch.randn(L, L, L, dtype=torch.float64) * 0.02
ONE = torch.ones(1, L, dtype=torch.float64)


def quadratic(z):
    z = z.double()
    return (z @ A + ((z @ B) * z).sum(1) / 2).view(-1, 1)


def cubic(z):
    z = z.double()
    return quadratic(z) + torch.einsum("bi,bj,bk,ijk->b", z, z, z, C).view(-1, 1)


def cubic_shapley():
    """Shapley values of the cubic game: each monomial z_i z_j z_k (distinct) gives 1/3 of its coefficient to each
    of its players; repeated indices reduce to lower orders (z_i^2 = z_i on {0, 1})."""
    i, j, k = torch.meshgrid(torch.arange(L), torch.arange(L), torch.arange(L), indexing="ij")
    eij, eik, ejk = i == j, i == k, j == k
    d = C / (3 - (eij | eik | ejk).double() - (eij & ejk).double())     # coefficient / players in the monomial
    phi = A + B.sum(1) / 2 + d.sum((1, 2))                                 # player i
    phi += (d * ~eij).sum((0, 2))                                          # player j, when not i
    phi += (d * ~(eik | ejk)).sum((0, 1))                                  # player k, when neither
    return phi


def test_paired_regression_is_exact_for_pairwise_games():
    """Pairs (z, 1 - z) make the fit exact when the game has no interaction above order 2, with 100 evaluations
    for 30 players: a first- or second-order Taylor control variate would remove nothing more."""
    a = ak.explain(quadratic, ONE, "kernel_shap", n_samples=100, seed=0)
    exact = A + B.sum(1) / 2
    assert torch.allclose(a.info["player_values"][0], exact, atol=1e-9)
    assert float(a.info["std_err"].max()) < 1e-6              # residuals vanish, so do the errors


def test_third_order_games_converge_with_honest_errors():
    exact = cubic_shapley()
    inside, errs = [], []
    for seed in range(10):
        a = ak.explain(cubic, ONE, "kernel_shap", n_samples=400, seed=seed)
        err = a.info["player_values"][0] - exact
        errs.append(float(err.norm() / exact.norm()))
        inside += (err.abs() <= 1.96 * a.info["std_err"][0]).tolist()
    # measured over seeds 0-9, 10-19, ..., 40-49: coverage 0.923..0.963, mean error 0.034..0.036
    assert 0.86 <= sum(inside) / len(inside) <= 0.99
    assert sum(errs) / len(errs) < 0.05


def test_pairs_are_distinct_and_allotted_by_class():
    l = 12
    st = Strata(l, [2, 3, 4, 5, 6], size_mass(l), ALPHA, torch.Generator().manual_seed(0))
    z, c = st.draw(st.allot(200))
    assert z.shape[0] == 200 and len({r.numpy().tobytes() for r in z}) == 200        # without replacement
    sizes = torch.tensor(st.sizes)[c]
    assert torch.equal(z.sum(1), sizes)                                             # each pair's small member
    assert bool(z[sizes == 6][:, 0].all())                     # s = l/2: the member holding player 0
    z2, c2 = st.draw(st.allot(10_000))                          # more than there are: every pair once
    assert st.counts == st.population
    everything = torch.cat([z, z2])
    assert len({r.numpy().tobytes() for r in everything}) == sum(st.population)
    st = Strata(50, list(range(2, 26)), size_mass(50), ALPHA, torch.Generator().manual_seed(0))
    st.allot(950)
    counts = torch.tensor(st.allot(950), dtype=torch.float64)   # house-monotone rounds: counts follow shares
    want = 950 * torch.tensor(st.share) / sum(st.share)
    assert float((counts - want).abs().max()) <= 1.0


def test_unrank_enumerates_each_class_once():
    for l, s in ((7, 3), (8, 4), (10, 1)):
        half = 2 * s == l
        n = math.comb(l, s) // (2 if half else 1)
        z = _unrank(l, s, torch.arange(n), half)
        assert len({r.numpy().tobytes() for r in z}) == n and bool((z.sum(1) == s).all())


def test_plan_enumerates_the_end_classes_that_fit():
    z, w, rest = plan(50, 2000)
    assert z.shape[0] == 100 and rest == list(range(2, 26))          # sizes 1 and 49 enumerated, the rest sampled
    assert torch.allclose(w.sum(), size_mass(50)[[1, 49]].sum())
    z, w, rest = plan(10, 1022, everything=True)
    assert z.shape[0] == 1022 and rest == []


def test_budget_is_spent_exactly_and_reported():
    a = ak.explain(cubic, ONE, "kernel_shap", n_samples=301, seed=0)
    assert a.info["n_samples"].tolist() == [300] and a.info["n_evals"] <= 301 + 3
    with pytest.raises(ValueError, match="singular.*n_samples=40.*30 players"):
        ak.explain(cubic, ONE, "kernel_shap", n_samples=40, seed=0)


def test_standard_errors_stay_honest_when_classes_are_mostly_sampled():
    """10 players, 700 of 1,022 coalitions: most pairs of each class are drawn, and the finite-population
    correction keeps the stated errors at the size of the true ones (without it they are 1.4x too wide)."""
    from attrkit.games import exact_from_values
    from attrkit.games.common import all_coalitions
    l = 10
    g = torch.Generator().manual_seed(1)
    w, u = torch.randn(l, 16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    relu_game = lambda z: (torch.relu(z.double() @ w - 1) @ u).view(-1, 1)
    exact = exact_from_values(relu_game(all_coalitions(l)), l)[:, 0]
    e2 = s2 = 0.0
    inside = []
    for seed in range(20):
        a = ak.explain(relu_game, torch.ones(1, l, dtype=torch.float64), "kernel_shap", n_samples=700, seed=seed)
        err, se = a.info["player_values"][0] - exact, a.info["std_err"][0]
        e2, s2 = e2 + float((err ** 2).sum()), s2 + float((se ** 2).sum())
        inside += (err.abs() <= 1.96 * se).tolist()
    # measured over seeds 0-19, 20-39, 40-59: squared error / variance 0.98..1.15, coverage 0.915..0.95;
    # without the correction 0.46..0.55 and 0.98..1.0
    assert 0.7 < e2 / s2 < 1.6
    assert 0.85 <= sum(inside) / len(inside) <= 0.975
