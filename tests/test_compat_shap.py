"""attrkit.compat.shap against shap (a test-only dependency) where both compute the same quantity, and
Attribution.to_shap() feeding shap's plots (Agg backend)."""
import numpy as np
import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.compat import shap as S

shap = pytest.importorskip("shap", reason="shap is a test dependency (pip install attrkit[test])")
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def tabular():
    torch.manual_seed(0)
    multi = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    single = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1), nn.Flatten(0)).eval()
    g = torch.Generator().manual_seed(1)
    return multi, single, torch.randn(10, 4, generator=g), torch.randn(3, 4, generator=g)


def _numpy_fn(model):
    return lambda a: model(torch.as_tensor(a, dtype=torch.float32)).detach().numpy()


@pytest.mark.parametrize("which", ["multi", "single"])
def test_kernel_exact_permutation_equal_shap_kernel(tabular, which):
    """With nsamples >= 2^F - 2 shap's KernelExplainer enumerates every coalition: exact Shapley values with the
    background as masker. attrkit's Kernel (same budget), Exact and Permutation (500 evaluations cover all 16
    coalitions of 4 features) give the same numbers; a numpy model function works like the torch module."""
    multi, single, bg, x = tabular
    model = multi if which == "multi" else single
    ref = shap.KernelExplainer(_numpy_fn(model), bg.numpy())
    theirs = ref.shap_values(x.numpy(), nsamples=100, silent=True)
    ours = S.KernelExplainer(model, bg)
    for values in (ours.shap_values(x, nsamples=100), S.KernelExplainer(_numpy_fn(model), bg.numpy())
                   .shap_values(x.numpy(), nsamples=100), S.ExactExplainer(model, bg)(x).values,
                   S.PermutationExplainer(model, bg)(x).values, S.Explainer(model, bg)(x).values,
                   S.Explainer(model, bg, algorithm="permutation")(x, max_evals=200).values):
        assert values.shape == theirs.shape
        assert np.abs(values - theirs).max() < 1e-5
    assert np.allclose(ours.expected_value, ref.expected_value, atol=1e-6)
    e = ours(x)
    assert isinstance(e, shap.Explanation) and e.base_values.shape == ((3, 3) if which == "multi" else (3,))
    total = e.values.sum(1) + e.base_values                       # additivity: sum + E[f] = f(x)
    assert np.allclose(total, model(x).detach().numpy(), atol=1e-5)


def test_deep_explainer_equals_shap(tabular):
    multi, _, bg, x = tabular
    theirs = shap.DeepExplainer(multi, bg).shap_values(x)
    ours = S.DeepExplainer(multi, bg).shap_values(x)
    assert ours.shape == np.shape(theirs) and np.abs(ours - theirs).max() < 1e-5


def test_gradient_explainer_equals_shap_with_the_same_seed(tabular):
    """The compat GradientExplainer draws SHAP's background rows, positions and smoothing noise in SHAP's order:
    with the same rseed (and torch seed for local_smoothing) the values are SHAP's."""
    multi, single, bg, x = tabular
    ours = S.GradientExplainer(multi, bg).shap_values(x, nsamples=30, rseed=5)
    theirs = shap.GradientExplainer(multi, bg).shap_values(x, nsamples=30, rseed=5)
    assert ours.shape == np.shape(theirs) == (3, 4, 3) and np.abs(ours - theirs).max() < 1e-6
    one = S.GradientExplainer(single, bg).shap_values(x, nsamples=30, rseed=5)   # shap needs [N, K] outputs
    assert one.shape == (3, 4)
    results = []
    for lib in (S, shap):
        torch.manual_seed(2)
        results.append(lib.GradientExplainer(multi, bg, local_smoothing=0.1).shap_values(x, nsamples=20, rseed=5))
    assert np.abs(results[0] - results[1]).max() < 1e-6


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b, self.relu, self.out = nn.Linear(3, 4), nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x1, x2):
        return self.out(self.relu(self.a(x1) + self.b(x2)))


def test_several_inputs_as_lists():
    model, g = TwoInputs().eval(), torch.Generator().manual_seed(7)
    data = [torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)]
    x = [torch.randn(3, 3, generator=g), torch.randn(3, 2, generator=g)]
    for ours, theirs in ((S.GradientExplainer(model, data).shap_values(x, nsamples=25, rseed=1),
                          shap.GradientExplainer(model, data).shap_values(x, nsamples=25, rseed=1)),
                         (S.DeepExplainer(model, data).shap_values(x), shap.DeepExplainer(model, data).shap_values(x))):
        assert isinstance(ours, list) and [o.shape for o in ours] == [(3, 3, 2), (3, 2, 2)]
        assert max(np.abs(o - t).max() for o, t in zip(ours, theirs)) < 1e-6
    with pytest.raises(ValueError, match="list of inputs"):
        S.DeepExplainer(model, data).shap_values(x[0])


def test_to_shap_fields(tabular):
    multi, _, bg, x = tabular
    a = ak.explain(multi, x, "integrated_gradients", target=1, steps=256)
    a.class_names = ["cat", "dog", "owl"]
    e = a.to_shap(feature_names=["a", "b", "c", "d"])
    assert e.output_names == "dog"
    assert e.values.shape == (3, 4) and e.data.shape == (3, 4) and e.feature_names == ["a", "b", "c", "d"]
    f_x = multi(x)[:, 1].detach().numpy()
    assert np.allclose(e.values.sum(1) + e.base_values, f_x, atol=1e-3)           # IG is complete
    assert np.allclose(e.base_values, a.info["f_baseline"].numpy())
    s = ak.explain(multi, x, "shapley", target=0, masker=ak.games.maskers.Background(bg))
    e = s.to_shap()
    assert np.allclose(e.values.sum(1) + e.base_values, multi(x)[:, 0].detach().numpy(), atol=1e-5)


def test_shap_plots_accept_attrkit_results(tabular):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    multi, _, _, _ = tabular
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(5))
    e = ak.explain(multi, x, "integrated_gradients", target=2).to_shap(feature_names=list("abcd"))
    for draw in (lambda: shap.plots.beeswarm(e, show=False), lambda: shap.plots.bar(e, show=False),
                 lambda: shap.plots.waterfall(e[0], show=False), lambda: shap.plots.heatmap(e, show=False)):
        draw()
        assert plt.gcf().axes
        plt.close("all")
    cnn = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 2)).eval()
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    e = ak.explain(cnn, img, "saliency", target=1).to_shap()
    assert e.values.shape == (2, 8, 8, 3) and e.data.shape == (2, 8, 8, 3)             # SHAP's image layout
    shap.plots.image(e, show=False)
    assert len(plt.gcf().axes) >= 2
    plt.close("all")


def test_to_shap_refuses_several_inputs():
    class Two(nn.Module):
        def forward(self, a, b):
            return a.sum(1, keepdim=True) + b.sum(1, keepdim=True)
    a = ak.explain(Two(), (torch.randn(2, 3), torch.randn(2, 2)), "saliency")
    with pytest.raises(ValueError, match="part"):
        a.to_shap()
    assert a.part(0).to_shap().values.shape == (2, 3)
