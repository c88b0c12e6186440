"""Agreement with Captum (Occlusion, FeatureAblation, KernelShap with every coalition), shap (ExactExplainer) and
lime (LimeBase on every coalition) on the same game, to 1e-4."""
import math

import pytest
import torch

import attrkit as ak
from attrkit.games import grid
from conftest import TinyCNN

captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")


def close(a, b, tol=1e-4):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < tol


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return TinyCNN().eval(), torch.rand(2, 3, 16, 16), torch.tensor([1, 2])


@pytest.mark.parametrize("window, stride", [((3, 4, 4), (3, 2, 2)), ((3, 5, 5), (3, 3, 3)), ((1, 4, 4), (1, 4, 4))])
def test_occlusion_matches_captum(setup, window, stride):
    model, x, t = setup
    ours = ak.explain(model, x, "occlusion", target=t, window=window, stride=stride, baseline=0.25).values
    theirs = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride, target=t,
                                                    baselines=0.25)
    assert close(ours, theirs)
    spatial = ak.explain(model, x, "occlusion", target=t, window=window[1:], stride=stride[1:], baseline=0.25).values
    if window[0] == 3:                                      # a spatial window covers all channels, as (3, k, k)
        assert close(spatial, theirs)


def test_feature_ablation_matches_captum(setup):
    model, x, t = setup
    players = grid(x, 4)
    ours = ak.explain(model, x, "feature_ablation", target=t, players=players, baseline=0.3, spread="paint").values
    theirs = captum_attr.FeatureAblation(model).attribute(x, feature_mask=players.unsqueeze(1), target=t, baselines=0.3)
    assert close(ours, theirs)


class AllCoalitionsKernelShap(captum_attr.KernelShap):
    """Captum's KernelShap fed every coalition once, each weighted by the Shapley kernel (Proposition 2.34)."""

    def kernel_shap_perturb_generator(self, original_inp, **kwargs):
        m = kwargs["num_interp_features"]
        for code in range(1 << m):
            yield ((code >> torch.arange(m)) & 1).view(1, -1).long()

    def kernel_shap_similarity_kernel(self, _, __, z, **kwargs):
        m, k = kwargs["num_interp_features"], int(z.sum())
        if k in (0, m):
            return torch.tensor([self.inf_weight])
        return torch.tensor([(m - 1) / (math.comb(m, k) * k * (m - k))])


def test_kernel_shap_with_all_coalitions_matches_captum(setup):
    model, x, t = setup
    players = grid(x, (2, 4))
    for i in range(2):
        ours = ak.explain(model, x[i:i + 1], "kernel_shap", target=int(t[i]), players=players[i:i + 1],
                          n_samples=254, spread="paint")
        assert ours.info["exact"] is True
        theirs = AllCoalitionsKernelShap(model).attribute(x[i:i + 1], target=int(t[i]), n_samples=256, baselines=0.0,
                                                          perturbations_per_eval=64,
                                                          feature_mask=players[i:i + 1].unsqueeze(1))
        assert close(ours.values, theirs)
        exact = ak.explain(model, x[i:i + 1], "shapley", target=int(t[i]), players=players[i:i + 1], spread="paint")
        assert close(exact.values, theirs)


def _no_jit(monkeypatch, *modules):
    """Swap shap's numba kernels for their Python originals for this test: compiling them costs ~20-40 s, the
    interpreted versions take milliseconds on 2^8 coalitions (restored by monkeypatch afterwards). The link
    is passed explicitly because shap binds the default link at import."""
    from numba.core.registry import CPUDispatcher
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, CPUDispatcher):
                monkeypatch.setattr(mod, name, obj.py_func)


def test_exact_shapley_matches_shap_exact_explainer(setup, monkeypatch):
    """shap's ExactExplainer on the same game: a coalition vector -> the masked image -> the model's output."""
    shap = pytest.importorskip("shap", reason="shap is a test dependency (pip install attrkit[test])")
    import numpy as np
    import shap.explainers._exact
    import shap.links
    import shap.maskers._tabular
    import shap.utils._masked_model
    _no_jit(monkeypatch, shap.links, shap.maskers._tabular, shap.utils._masked_model, shap.explainers._exact)
    model, x, t = setup
    players = grid(x, (2, 4))
    for i in range(2):
        lab = players[i].flatten()

        def f(z):
            keep = torch.as_tensor(z, dtype=torch.bool)[:, lab].view(-1, 1, 16, 16)
            with torch.no_grad():
                return model(torch.where(keep, x[i:i + 1], torch.zeros(()))).numpy()[:, int(t[i])]

        explainer = shap.explainers.Exact(f, np.zeros((1, 8)), link=shap.links.identity)
        sv = explainer(np.ones((1, 8)), silent=True)
        a = ak.explain(model, x[i:i + 1], "shapley", target=int(t[i]), players=players[i:i + 1])
        assert close(a.info["player_values"][0], sv.values[0])
        assert abs(float(a.info["base_value"][0]) - float(sv.base_values[0])) < 1e-5


def test_lime_matches_lime_base_on_all_coalitions(setup):
    lime_base = pytest.importorskip("lime.lime_base", reason="lime is a test dependency")
    import numpy as np
    from sklearn.metrics import pairwise_distances
    from attrkit.games.common import all_coalitions
    from attrkit.games.game import Game
    model, x, t = setup
    players = grid(x, (2, 3))
    ours = ak.explain(model, x[:1], "lime", target=1, players=players[:1], n_samples=64, ridge=1.0)
    z = all_coalitions(6)
    values = Game(model, x[:1], players=players[:1], target=1)(z, torch.zeros(64, dtype=torch.long))
    data = z.numpy().astype(float)
    order = np.r_[63, np.arange(63)]                        # lime puts the original (all ones) first
    dist = pairwise_distances(data[order], data[63:64], metric="cosine").ravel()
    kernel = lambda d: np.sqrt(np.exp(-(d ** 2) / 0.25 ** 2))
    intercept, exp, score, _ = lime_base.LimeBase(kernel).explain_instance_with_data(
        data[order], values.numpy()[order], dist, 0, 6, feature_selection="none")
    coef = np.zeros(6)
    for j, w in exp:
        coef[j] = w
    assert close(ours.info["player_values"][0], coef)
    assert abs(float(ours.info["intercept"][0]) - intercept) < 1e-5
    assert abs(float(ours.info["r2"][0]) - score) < 1e-5
