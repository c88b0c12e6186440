"""Agreement with Captum 0.9 (a test-only dependency) where both compute the same quantity."""
import pytest
import torch

import attrkit as ak

captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")

CAPTUM_RULES = {"riemann_left": "riemann_left", "riemann_right": "riemann_right",
                "riemann_middle": "riemann_middle", "gauss_legendre": "gausslegendre"}


def close(a, b, rtol=1e-4):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < rtol


@pytest.fixture
def setup(trained_cnn):
    model, x = trained_cnn
    return model, x[:4].clone(), torch.tensor([0, 3, 5, 9])


def test_saliency_and_input_x_gradient(setup):
    model, x, t = setup
    ours = ak.explain(model, x, "saliency", target=t, abs=True).values
    theirs = captum_attr.Saliency(model).attribute(x.clone().requires_grad_(), target=t, abs=True)
    assert close(ours, theirs)
    ours = ak.explain(model, x, "input_x_gradient", target=t).values
    theirs = captum_attr.InputXGradient(model).attribute(x.clone().requires_grad_(), target=t)
    assert close(ours, theirs)


@pytest.mark.parametrize("rule", list(CAPTUM_RULES))
def test_integrated_gradients_rules(setup, rule):
    model, x, t = setup
    base = torch.full_like(x, 0.1)
    ours = ak.explain(model, x, "integrated_gradients", target=t, baseline=base, steps=20, rule=rule).values
    theirs = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=base, target=t, n_steps=20, method=CAPTUM_RULES[rule])
    assert close(ours, theirs)


def test_trapezoid_differs_from_captum_by_its_weight_defect():
    """Captum's riemann_trapezoid weights sum to (n-1)/n; ours sum to 1 (see attrkit.gradients.quadrature)."""
    lin = torch.nn.Linear(4, 1)
    x = torch.randn(3, 4)
    exact = lin.weight * x
    ours = ak.explain(lin, x, "integrated_gradients", steps=7, rule="riemann_trapezoid").values
    theirs = captum_attr.IntegratedGradients(lin).attribute(x, n_steps=7, method="riemann_trapezoid")
    assert torch.allclose(ours, exact, atol=1e-6)
    assert torch.allclose(theirs, exact * 6 / 7, atol=1e-5)


def test_noise_tunnel_smoothgrad_with_fixed_noise(setup):
    model, x, t = setup
    s, sigma = 6, 0.2
    torch.manual_seed(123)
    theirs = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        x.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=s, stdevs=sigma, target=t, abs=False)
    torch.manual_seed(123)
    noise = torch.normal(0, torch.tensor(sigma).repeat((x.shape[0] * s,) + tuple(x.shape[1:])))
    ours = ak.explain(model, x, "smoothgrad", target=t, n_samples=s, perturbations=noise).values
    assert close(ours, theirs)
    torch.manual_seed(7)
    theirs = captum_attr.NoiseTunnel(captum_attr.IntegratedGradients(model)).attribute(
        x, nt_type="smoothgrad_sq", nt_samples=s, stdevs=sigma, target=t, n_steps=10)
    torch.manual_seed(7)
    noise = torch.normal(0, torch.tensor(sigma).repeat((x.shape[0] * s,) + tuple(x.shape[1:])))
    ours = ak.explain(model, x, "smoothgrad_sq", base="integrated_gradients", target=t, n_samples=s,
                      perturbations=noise, steps=10).values
    assert close(ours, theirs)


def test_layer_integrated_gradients(setup):
    model, x, t = setup
    layer = model[2]
    ours = ak.explain(model, x, "integrated_gradients", target=t, layer="2", steps=16).values
    theirs = captum_attr.LayerIntegratedGradients(model, layer).attribute(x, target=t, n_steps=16)
    assert close(ours, theirs)
    ours = ak.explain(model, x, "saliency", target=t, layer="2").values
    theirs = captum_attr.LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(x, target=t)
    assert close(ours, theirs)
    ours = ak.explain(model, x, "input_x_gradient", target=t, layer="2").values
    theirs = captum_attr.LayerGradientXActivation(model, layer).attribute(x, target=t)
    assert close(ours, theirs)
