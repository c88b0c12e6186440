"""Gradient methods: closed forms, axioms, completeness of the quadrature rules, layers, noise."""
import pytest
import torch
from torch import nn

import attrkit as ak
from conftest import record
from attrkit.gradients.quadrature import RULES, nodes

RULE_NAMES = list(RULES)


def linear_model(n=6, out=3, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(n, out).eval()


@pytest.mark.parametrize("rule", RULE_NAMES)
@pytest.mark.parametrize("steps", [2, 7, 50])
def test_ig_linear_equals_w_times_x_minus_baseline(rule, steps):
    m = linear_model()
    x, r = torch.randn(4, 6), torch.randn(1, 6)
    a = ak.explain(m, x, "integrated_gradients", target=2, baseline=r, steps=steps, rule=rule)
    assert torch.allclose(a.values, m.weight[2] * (x - r), atol=1e-5)
    assert a.info["completeness_gap"].max() < 1e-5


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_rule_weights_sum_to_one(rule):
    for n in (2, 3, 7, 16, 50, 128):
        alphas, w = nodes(rule, n)
        assert abs(float(w.sum()) - 1.0) < 1e-12
        assert float(alphas.min()) >= 0 and float(alphas.max()) <= 1


def test_each_rule_is_its_textbook_quadrature():
    """For f = sum x^3 and baseline 0, IG_i = 3 x_i^3 sum_k w_k a_k^2: the rule's nodes and weights, written out
    here independently of attrkit.gradients.quadrature (Gauss-Legendre integrates a^2 exactly: 1/3)."""
    f = lambda z: (z ** 3).sum(1, keepdim=True)
    x = torch.tensor([[0.5, -1.5, 2.0]], dtype=torch.float64)
    n, k = 5, torch.arange(5, dtype=torch.float64)
    textbook = {"riemann_left": (k / n, torch.full((n,), 1 / n)),
                "riemann_right": ((k + 1) / n, torch.full((n,), 1 / n)),
                "riemann_middle": ((k + 0.5) / n, torch.full((n,), 1 / n)),
                "riemann_trapezoid": (k / (n - 1), torch.tensor([0.5, 1, 1, 1, 0.5]) / (n - 1)),
                "gauss_legendre": (torch.tensor([1.0]), torch.tensor([1 / 3]))}     # sum w a^2 = int a^2
    assert set(textbook) == set(RULE_NAMES)
    for rule, (a, w) in textbook.items():
        got = ak.explain(f, x, "integrated_gradients", steps=n, rule=rule).values
        want = 3 * x ** 3 * float((w.double() * a ** 2).sum())
        assert torch.allclose(got, want, rtol=1e-6, atol=1e-9), rule


def test_input_x_gradient_linear():
    m = linear_model()
    x = torch.randn(5, 6)
    a = ak.explain(m, x, "input_x_gradient", target=1)
    assert torch.allclose(a.values, m.weight[1] * x, atol=1e-6)
    s = ak.explain(m, x, "saliency", target=1)
    assert torch.allclose(s.values, m.weight[1].expand(5, 6), atol=1e-6)


def test_ig_product_splits_evenly():
    f = lambda x: (x[:, 0] * x[:, 1]).unsqueeze(1)
    x = torch.tensor([[2.0, 3.0], [-1.5, 4.0]])
    a = ak.explain(f, x, "integrated_gradients", steps=8)
    half = (x[:, 0] * x[:, 1] / 2).unsqueeze(1).expand(2, 2)
    assert torch.allclose(a.values, half, atol=1e-5)


def test_dummy_feature_gets_exactly_zero(trained_mlp):
    model, x = trained_mlp
    x = x[:8].clone()
    wrapped = nn.Sequential()  # model that ignores feature 3 by zeroing it first

    class Ignore3(nn.Module):
        def forward(self, z):
            mask = torch.ones(z.shape[1])
            mask[3] = 0
            return model(z * mask)
    a = ak.explain(Ignore3(), x, "integrated_gradients", target=1, steps=16)
    assert (a.values[:, 3] == 0).all()
    assert a.values[:, [0, 1, 2]].abs().sum() > 0


@pytest.mark.parametrize("which", ["trained_mlp", "trained_cnn"])
def test_gauss_legendre_beats_trapezoid_and_tolerance_is_met(which, request):
    model, x = request.getfixturevalue(which)
    gl = ak.explain(model, x[:64], "integrated_gradients", steps=16, rule="gauss_legendre")
    tr = ak.explain(model, x[:64], "integrated_gradients", steps=16, rule="riemann_trapezoid")
    ratio = gl.info["completeness_gap"].abs().clamp_min(1e-12) / tr.info["completeness_gap"].abs().clamp_min(1e-12)
    geo = float(ratio.log().mean().exp())          # geometric mean over 64 samples of the gap ratio GL / trapezoid
    # ReLU kinks blunt Gauss-Legendre's order, least on the tanh MLP. Spread (conftest.py: fixture seeds 0-2, 1 and 2
    # threads, mkldnn off): trained_mlp 0.42..0.69, trained_cnn 0.65..0.76. The former test (GL better on > 50 %
    # of 24 samples) measured 0.58..0.71: too close to its bar.
    assert record(f"gl_over_trapezoid_{which}", geo) < (0.85 if which == "trained_mlp" else 1.0), geo
    x = x[:24]
    tol = ak.explain(model, x, "integrated_gradients", steps=8, tolerance=1e-3, max_steps=4096)
    assert tol.info["rule"] == "adaptive" and tol.info["tolerance_met"]
    assert (tol.info["relative_gap"] <= 1e-3).all()
    assert tol.info["steps"].min() >= 8
    # pieces are refined only where their own gap is large: far below "all samples at the max steps"
    # spread (variants as above): trained_mlp 0.18..0.62, trained_cnn 0.34..0.46
    assert record(f"adaptive_evals_share_{which}", tol.info["n_evals"] / (len(x) * int(tol.info["steps"].max()))) < 1
    # the doubling scheme with a fixed rule meets a (looser) bar too, and costs more than the adaptive rule
    dbl = ak.explain(model, x, "integrated_gradients", steps=8, rule="gauss_legendre", tolerance=1e-2)
    ada = ak.explain(model, x, "integrated_gradients", steps=8, tolerance=1e-2)
    assert dbl.info["tolerance_met"] and ada.info["tolerance_met"]
    assert set(dbl.info["steps"].tolist()) <= {8, 16, 32, 64, 128, 256, 512, 1024}
    assert record(f"adaptive_vs_doubling_{which}", ada.info["n_evals"] / dbl.info["n_evals"]) < 1   # 0.27..0.62


def test_adaptive_rule_is_exact_where_simpson_is_and_bounded_by_the_budget(trained_cnn):
    torch.manual_seed(0)
    w = torch.randn(1, 6)
    lin = nn.Linear(6, 1)
    with torch.no_grad():
        lin.weight.copy_(w)
    x = torch.randn(4, 6)
    a = ak.explain(lin, x, "integrated_gradients", tolerance=1e-6, target=0)
    assert torch.allclose(a.values, w * x, atol=1e-5)
    assert a.info["steps"].tolist() == [9, 9, 9, 9]       # the first partition is already exact
    model, xs = trained_cnn
    xs = xs[:6]
    big = ak.explain(model, xs, "integrated_gradients", tolerance=1e-2)
    # the memory budget's sample groups (all 6 / one a group) do not change the result; the same rows per model
    # call in both (batch_size=1): otherwise rounding differences of 1e-7 between batch sizes (convolutions
    # without mkldnn) can flip a refinement decision near the tolerance or a max-pool tie on these digits
    one = ak.explain(model, xs, "integrated_gradients", tolerance=1e-2, batch_size=1)
    small = ak.explain(model, xs, "integrated_gradients", tolerance=1e-2, max_memory=200_000, batch_size=1)
    assert torch.equal(one.values, small.values) and one.info["n_evals"] == small.info["n_evals"]
    capped = ak.explain(model, xs, "integrated_gradients", tolerance=1e-9, max_steps=21)
    assert capped.info["steps"].max() <= 21 and not capped.info["tolerance_met"]
    at_layer = ak.explain(model, xs, "integrated_gradients", tolerance=1e-2, layer="3")
    assert at_layer.info["tolerance_met"] and at_layer.values.shape[1:] != xs.shape[1:]
    # the per-feature error estimate is conservative: at least the true error against a 1,024-point reference
    ref = ak.explain(model, xs, "integrated_gradients", steps=1024)
    true = (big.values - ref.values).flatten(1).norm(dim=1) / ref.values.flatten(1).norm(dim=1)
    est = big.info["feature_error_estimate"]
    # spread (fixture seeds 0-2, 1 and 2 threads, mkldnn off): conservative share 1.0 everywhere, ratio 0.27..0.35
    assert record("estimate_conservative_share", float((est >= true).float().mean())) >= 0.8
    assert record("estimate_over_true_max", float((est / (10 * true + 1e-3)).max())) < 1
    # feature_tolerance drives that estimate: met, and the true error falls below it
    fine = ak.explain(model, xs, "integrated_gradients", tolerance=1e-2, feature_tolerance=0.02)
    assert fine.info["tolerance_met"] and (fine.info["feature_error_estimate"] <= 0.02).all()
    fine_true = (fine.values - ref.values).flatten(1).norm(dim=1) / ref.values.flatten(1).norm(dim=1)
    assert (fine_true <= 0.02).all() and fine.info["n_evals"] > big.info["n_evals"]
    with pytest.raises(ValueError, match="feature_tolerance= needs rule='adaptive'"):
        ak.explain(model, xs, "integrated_gradients", rule="gauss_legendre", tolerance=1e-2, feature_tolerance=0.1)
    with pytest.raises(ValueError, match="pass tolerance="):
        ak.explain(model, xs, "integrated_gradients", rule="adaptive")


def _layer_grad(cnn, x, target=1):
    """The activation of features.2 and the target's gradient there, by hand."""
    act = cnn.features[:3](x).detach().requires_grad_(True)
    out = cnn.classifier(cnn.features[3:](act))[:, target]
    return act.detach(), torch.autograd.grad(out.sum(), act)[0]


def test_layer_attribution_values_and_heatmap(cnn):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    act, grad = _layer_grad(cnn, x)
    want = {"saliency": grad, "input_x_gradient": act * grad}
    eps = 0.1 * torch.randn(2 * 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    noisy_grads = _layer_grad(cnn, x.repeat_interleave(4, 0) + eps)[1]
    want["smoothgrad"] = noisy_grads.view(2, 4, *grad.shape[1:]).mean(1)
    # expected gradients at a layer (baseline zeros): E_a[layer gradient at a x] * (act(x) - act(0)), a ~ U(0, 1)
    mid = torch.stack([_layer_grad(cnn, (k + 0.5) / 256 * x)[1] for k in range(256)]).mean(0)
    want_gs = mid * (act - _layer_grad(cnn, torch.zeros_like(x))[0])
    for method in ["saliency", "input_x_gradient", "integrated_gradients", "gradient_shap", "smoothgrad"]:
        opts = {"n_samples": 4, "perturbations": eps} if method == "smoothgrad" else \
            {"n_samples": 500} if method == "gradient_shap" else {}
        a = ak.explain(cnn, x, method, target=1, layer="features.2", seed=0, **opts)
        assert a.values.shape == act.shape and a.layer == "features.2", method
        assert torch.allclose(a.heatmap(), a.values.sum(1)), method     # layer map at the input's size here
        if method in want:
            assert torch.allclose(a.values, want[method], atol=1e-6), method
        elif method == "integrated_gradients":   # completeness at the layer: sum = f(x) - f(baseline)
            f = cnn(x)[:, 1] - cnn(torch.zeros_like(x))[:, 1]
            assert torch.allclose(a.values.flatten(1).sum(1), f, atol=2e-3), (a.values.flatten(1).sum(1), f)
        else:      # 500 draws; relative L2 error 0.017..0.045 over seeds 0-5 (per sample)
            err = (a.values - want_gs).flatten(1).norm(dim=1) / want_gs.flatten(1).norm(dim=1)
            assert (err < 0.1).all(), err
    pooled = ak.explain(cnn, x, "integrated_gradients", target=1, layer="features.4")
    assert pooled.values.shape == (2, 8, 8, 8)
    assert pooled.heatmap().shape == (2, 16, 16)
    up = torch.nn.functional.interpolate(pooled.values.sum(1, keepdim=True), size=(16, 16), mode="bilinear",
                                         align_corners=False)[:, 0]
    assert torch.allclose(pooled.heatmap(), up, atol=1e-6)


def test_layer_ig_completeness(cnn):
    x = torch.rand(3, 3, 16, 16)
    a = ak.explain(cnn, x, "integrated_gradients", target=0, layer="features.1", steps=64)
    f = cnn(x)[:, 0] - cnn(torch.zeros_like(x))[:, 0]
    assert torch.allclose(a.values.flatten(1).sum(1), f, atol=1e-3, rtol=1e-3)


def test_input_heatmap_is_channel_sum(cnn):
    x = torch.rand(2, 3, 16, 16)
    a = ak.explain(cnn, x, "saliency", target=0)
    assert torch.allclose(a.heatmap(), a.values.sum(1))


def test_any_rank_inputs():
    series = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8, 3))
    vol = nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2 * 2, 3))
    a = ak.explain(series, torch.randn(2, 2, 10), "integrated_gradients", target=0)
    assert a.values.shape == (2, 2, 10) and a.heatmap().shape == (2, 10)
    xv = torch.randn(2, 1, 4, 4, 4)
    b = ak.explain(vol, xv, "integrated_gradients", target=0)
    assert b.values.shape == (2, 1, 4, 4, 4) and b.heatmap().shape == (2, 4, 4, 4)
    assert torch.allclose(b.heatmap(), b.values.sum(1)) and torch.allclose(a.heatmap(), a.values.sum(1))
    with torch.no_grad():      # completeness holds whatever the rank (ReLU kinks: a loose tolerance)
        fv = vol(xv)[:, 0] - vol(torch.zeros_like(xv))[:, 0]
    assert torch.allclose(b.values.flatten(1).sum(1), fv, atol=1e-2 * float(fv.abs().max()) + 1e-4)


def test_target_forms(mlp):
    x = torch.randn(3, 5)
    by_int = ak.explain(mlp, x, "saliency", target=2)
    by_list = ak.explain(mlp, x, "saliency", target=[2, 2, 2])
    by_fn = ak.explain(mlp, x, "saliency", target=lambda out: out[:, 2])
    assert torch.allclose(by_int.values, by_list.values) and torch.allclose(by_int.values, by_fn.values)
    pred = ak.explain(mlp, x, "saliency")
    assert torch.equal(pred.target, mlp(x).argmax(1))
    single = nn.Linear(5, 1)
    assert ak.explain(single, x, "saliency").values.shape == (3, 5)
    flat = lambda z: single(z).squeeze(1)
    assert torch.allclose(ak.explain(flat, x, "saliency").values, single.weight.expand(3, 5))


def test_segmentation_target_callable():
    seg = nn.Conv2d(3, 2, 3, padding=1)
    x = torch.rand(2, 3, 8, 8)
    a = ak.explain(seg, x, "integrated_gradients", target=lambda out: out[:, 1].sum(dim=(1, 2)))
    total = seg(x)[:, 1].sum((1, 2)) - seg(torch.zeros_like(x))[:, 1].sum((1, 2))
    assert torch.allclose(a.values.flatten(1).sum(1), total, atol=1e-4)


def test_eval_mode_restored_and_warned():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    m.train()
    with pytest.warns(UserWarning, match="train mode"):
        a1 = ak.explain(m, torch.ones(2, 4), "saliency", target=0)
    assert m.training and m[1].training
    m.eval()
    a2 = ak.explain(m, torch.ones(2, 4), "saliency", target=0)
    assert torch.allclose(a1.values, a2.values)  # dropout was off during the call
    assert not m.training


def test_noise_wrapper_forms_agree(mlp):
    x = torch.randn(3, 5)
    a = ak.explain(mlp, x, "smoothgrad", base="input_x_gradient", n_samples=8, noise_level=0.1, seed=3)
    b = ak.explain(mlp, x, "input_x_gradient", noise={"n_samples": 8, "noise_level": 0.1}, seed=3)
    assert torch.allclose(a.values, b.values) and torch.equal(a.info["std_err"], b.info["std_err"])
    c = ak.explain(mlp, x, "input_x_gradient", noise={"n_samples": 8, "noise_level": 0.1}, seed=4)
    assert not torch.allclose(a.values, c.values)
    sq = ak.explain(mlp, x, "smoothgrad_sq", n_samples=8, seed=3)
    var = ak.explain(mlp, x, "vargrad", n_samples=8, seed=3)
    mean = ak.explain(mlp, x, "smoothgrad", n_samples=8, seed=3)
    assert torch.allclose(var.values, sq.values - mean.values ** 2, atol=1e-5)
    # IG with noise: its completeness gap is the mean of the noisy copies' own gaps
    eps = 0.05 * torch.randn(3 * 4, 5, generator=torch.Generator().manual_seed(0))
    ig_noisy = ak.explain(mlp, x, "integrated_gradients", noise={"n_samples": 4, "perturbations": eps}, steps=8,
                          target=1)
    copies = ak.explain(mlp, x.repeat_interleave(4, 0) + eps, "integrated_gradients", steps=8, target=1)
    assert torch.allclose(ig_noisy.values, copies.values.view(3, 4, 5).mean(1), atol=1e-6)
    assert torch.allclose(ig_noisy.info["completeness_gap"], copies.info["completeness_gap"].view(3, 4).mean(1),
                          atol=1e-7)
    assert float(ig_noisy.info["completeness_gap"].max()) > 1e-6        # 8 steps over ReLU kinks: not exact


def test_noise_std_err_is_the_standard_error_of_each_estimate():
    """std_err by hand from the copies' gradients, and calibrated: over 200 seeds the estimates spread as
    std_err says."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    x, s = torch.randn(2, 5), 8
    eps = 0.3 * torch.randn(2 * s, 5, generator=torch.Generator().manual_seed(1))
    z = (x.repeat_interleave(s, 0) + eps).requires_grad_(True)
    g = torch.autograd.grad(m(z)[:, 1].sum(), z)[0].view(2, s, 5).double()
    c = g - g.mean(1, keepdim=True)
    var = (c ** 2).mean(1)
    want = {"smoothgrad": (g.mean(1), g.std(1) / s ** 0.5),
            "smoothgrad_sq": ((g ** 2).mean(1), (g ** 2).std(1) / s ** 0.5),
            "vargrad": (var, (((c ** 4).mean(1) - var ** 2) / s).sqrt())}
    for kind, (values, se) in want.items():
        a = ak.explain(m, x, kind, target=1, n_samples=s, perturbations=eps)
        assert torch.allclose(a.values.double(), values, rtol=1e-5, atol=1e-8), kind
        assert torch.allclose(a.info["std_err"].double(), se, rtol=1e-4, atol=1e-9), kind
    x1 = x[:1]
    for kind in want:
        runs = [ak.explain(m, x1, kind, target=1, n_samples=32, noise_level=0.5, seed=k) for k in range(200)]
        sd = torch.stack([r.values[0] for r in runs]).std(0)
        rms_se = torch.stack([r.info["std_err"][0] for r in runs]).pow(2).mean(0).sqrt()
        # spread of sd / rms(std_err) per feature: 0.90..1.13 (3 models x 5 features x 3 kinds, 200 seeds each)
        assert ((sd / rms_se > 0.75) & (sd / rms_se < 1.33)).all(), (kind, sd / rms_se)


def test_gradient_shap_is_seeded_and_converges_to_ig_for_single_baseline(mlp):
    g0 = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, generator=g0)
    a = ak.explain(mlp, x, "gradient_shap", target=0, n_samples=16, seed=1)
    b = ak.explain(mlp, x, "gradient_shap", target=0, n_samples=16, seed=1)
    assert torch.equal(a.values, b.values)
    lin = linear_model(5, 2)
    bg = torch.randn(10, 5, generator=g0)
    g = ak.explain(lin, x, "gradient_shap", target=1, baseline=bg, n_samples=4000, seed=0)
    expected = lin.weight[1] * (x - bg.mean(0))
    # linear model: only the background draw is random; max abs error 0.0015..0.011 (seeds 0-9 x 3 data draws)
    assert torch.allclose(g.values, expected, atol=0.05)


def test_save_and_load_roundtrip(tmp_path, cnn):
    x = torch.rand(2, 3, 16, 16)
    a = ak.explain(cnn, x, "integrated_gradients", target=[1, 2], steps=8)
    path = a.save(tmp_path / "ig.npz")
    b = ak.Attribution.load(path)
    assert torch.equal(a.values, b.values) and torch.equal(a.inputs, b.inputs)
    assert torch.equal(a.target, b.target) and b.method == "integrated_gradients"
    assert torch.equal(a.info["completeness_gap"], b.info["completeness_gap"])
    assert b.info["rule"] == "gauss_legendre"


def test_global_importance_mean_abs_and_stderr(mlp):
    x = torch.randn(40, 5)
    a = ak.explain(mlp, x, "integrated_gradients", target=0, steps=8)
    imp = ak.global_importance(a)
    v = a.values.abs()
    assert torch.allclose(imp.mean, v.mean(0), atol=1e-6)
    assert torch.allclose(imp.std_err, v.std(0) / 40 ** 0.5, atol=1e-5)
    chunks = ak.global_importance([a.values[:15], a.values[15:]])
    assert torch.allclose(chunks.mean, imp.mean, atol=1e-6)
    assert len(imp.ranking()) == 5


def test_smoothgrad_noise_is_scaled_by_each_samples_value_range():
    """sigma = noise_level * (max x - min x) per sample (Smilkov et al. 2017); for f = sum x^3 the expected
    SmoothGrad map is 3 x^2 + 3 sigma^2, so the map itself shows the noise scale."""
    f = lambda z: (z ** 3).sum(1, keepdim=True)
    x = torch.tensor([[-1.0, 0.5, 1.0], [0.0, 3.0, 0.5]])
    sigma = 0.2 * (x.max(1).values - x.min(1).values)
    a = ak.explain(f, x, "smoothgrad", n_samples=2000, noise_level=0.2, seed=0)
    assert torch.allclose(a.info["noise_std"], sigma)
    z = (a.values - (3 * x ** 2 + 3 * sigma[:, None] ** 2)) / a.info["std_err"]
    # max |z| over the 6 entries, seeds 0-29: 1.0..2.6 (sigma = 0.2 * max x instead gives 13)
    assert float(z.abs().max()) < 4, z
