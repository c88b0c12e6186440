"""attrkit.compat.captum against Captum 0.9 (a test-only dependency) on small equivalents of Captum's own test
models: single and multiple inputs, feature masks, baselines, targets, additional forward args."""
import numpy as np
import pytest
import torch
from torch import nn

from attrkit.compat import captum as A

C = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------ small equivalents of Captum's test models
class BasicModel_MultiLayer(nn.Module):
    """3 -> 4 -> ReLU -> 2 with fixed weights (Captum's BasicModel_MultiLayer shape)."""

    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(4, 2)
        with torch.no_grad():
            self.linear1.weight.copy_(torch.tensor([[1.0, 1, 1], [1, -1, 1], [0.5, 1, -1], [1, 0, 2]]))
            self.linear1.bias.copy_(torch.tensor([-1.0, 0.5, 0.0, 0.2]))
            self.linear2.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [2, 1, -1, 0.5]]))
            self.linear2.bias.copy_(torch.tensor([-1.0, 0.3]))

    def forward(self, x):
        return self.linear2(self.relu(self.linear1(x)))


class BasicModel_MultiInput(nn.Module):
    """forward(x1 [N, 3], x2 [N, 2, 2], scale [N, 1]) -> [N, 3] (tanh head; scale is not attributed)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(7, 5)
        self.act = nn.Tanh()
        self.head = nn.Linear(5, 3)

    def forward(self, x1, x2, scale):
        return self.head(self.act(self.fc(torch.cat([x1, x2.flatten(1)], 1)))) * scale


class BasicModel_ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.relu1 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(2 * 4 * 4, 4)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc2(self.relu2(self.fc1(self.flat(self.relu1(self.conv1(x))))))


class MaxPoolNet(BasicModel_ConvNet):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(2 * 2 * 2, 4)

    def forward(self, x):
        return self.fc2(self.relu2(self.fc1(self.flat(self.pool(self.relu1(self.conv1(x)))))))


class TextModel(nn.Module):
    """Token ids [N, L] -> embedding -> masked mean -> 2 logits; the mask is an additional forward arg."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.emb = nn.Embedding(20, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, ids, mask):
        return self.fc((self.emb(ids) * mask.unsqueeze(-1)).mean(1))


def _data():
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(4, 3, generator=g), "x1": torch.randn(4, 3, generator=g),
            "x2": torch.randn(4, 2, 2, generator=g), "scale": torch.rand(4, 1, generator=g) + 0.5,
            "img": torch.randn(3, 1, 6, 6, generator=g), "bg": torch.randn(5, 3, generator=g),
            "bg1": torch.randn(3, 3, generator=g), "bg2": torch.randn(3, 2, 2, generator=g)}


D = _data()
ML, MI, CNN = BasicModel_MultiLayer().eval(), BasicModel_MultiInput().eval(), BasicModel_ConvNet().eval()
TXT = TextModel().eval()
IDS = torch.randint(1, 20, (3, 5), generator=torch.Generator().manual_seed(1))
MASK = torch.tensor([[0, 0, 1]])
MASKS2 = (torch.tensor([[0, 1, 1]]), torch.tensor([[[0, 2], [2, 3]]]))          # label 0 spans both inputs
T4 = [0, 1, 1, 0]
MULTI = dict(inputs=(D["x1"], D["x2"]), additional_forward_args=(D["scale"],))

# (name, class, constructor args, attribute kwargs, seeded)
CASES = [
    ("saliency", "Saliency", (ML,), dict(inputs=D["x"], target=1), False),
    ("saliency-signed-multi", "Saliency", (MI,), dict(**MULTI, target=2, abs=False), False),
    ("ixg-list-target", "InputXGradient", (ML,), dict(inputs=D["x"], target=T4), False),
    ("ig-gl", "IntegratedGradients", (ML,), dict(inputs=D["x"], target=0, n_steps=20), False),
    ("ig-left-baseline", "IntegratedGradients", (ML,),
     dict(inputs=D["x"], baselines=0.3, target=T4, n_steps=15, method="riemann_left"), False),
    ("ig-right-delta", "IntegratedGradients", (ML,),
     dict(inputs=D["x"], target=1, n_steps=9, method="riemann_right", return_convergence_delta=True), False),
    ("ig-middle-multi", "IntegratedGradients", (MI,),
     dict(**MULTI, baselines=(0.1, torch.zeros(1, 2, 2)), target=1, method="riemann_middle",
          internal_batch_size=7), False),
    ("ig-tensor-baseline", "IntegratedGradients", (CNN,),
     dict(inputs=D["img"], baselines=torch.full((1, 1, 6, 6), 0.2), target=2, n_steps=10), False),
    ("gradshap", "GradientShap", (ML,), dict(inputs=D["x"], baselines=D["bg"], target=T4, n_samples=6, stdevs=0.1),
     True),
    ("gradshap-multi-delta", "GradientShap", (MI,),
     dict(**MULTI, baselines=(D["bg1"], D["bg2"]), target=0, n_samples=4, return_convergence_delta=True), True),
    ("gradshap-delta-list-target", "GradientShap", (ML,),
     dict(inputs=D["x"], baselines=D["bg"], target=T4, n_samples=3, stdevs=0.2, return_convergence_delta=True), True),
    ("noise-tunnel-ig-sq", "NoiseTunnel", (C.IntegratedGradients(ML),),
     dict(inputs=D["x"], nt_type="smoothgrad_sq", nt_samples=4, stdevs=0.2, target=1, n_steps=8), True),
    ("noise-tunnel-deeplift-vargrad", "NoiseTunnel", (C.DeepLift(ML),),
     dict(inputs=D["x"], nt_type="vargrad", nt_samples=3, stdevs=0.3, target=T4, baselines=0.1), True),
    ("deeplift", "DeepLift", (ML,), dict(inputs=D["x"], baselines=0.1, target=T4), False),
    ("deeplift-cnn-delta", "DeepLift", (CNN,), dict(inputs=D["img"], target=1, return_convergence_delta=True),
     False),
    ("deepliftshap", "DeepLiftShap", (ML,), dict(inputs=D["x"], baselines=D["bg"], target=1), False),
    ("guided", "GuidedBackprop", (CNN,), dict(inputs=D["img"], target=0), False),
    ("deconv", "Deconvolution", (CNN,), dict(inputs=D["img"], target=[0, 1, 2]), False),
    ("lrp-delta", "LRP", (ML,), dict(inputs=D["x"], target=0, return_convergence_delta=True), False),
    ("ablation", "FeatureAblation", (ML,), dict(inputs=D["x"], target=1), False),
    ("ablation-mask", "FeatureAblation", (ML,), dict(inputs=D["x"], target=T4, baselines=0.5, feature_mask=MASK),
     False),
    ("ablation-multi", "FeatureAblation", (MI,),
     dict(**MULTI, target=2, baselines=(0.1, torch.ones(1, 2, 2)), feature_mask=MASKS2, perturbations_per_eval=3),
     False),
    ("permutation", "FeaturePermutation", (ML,), dict(inputs=D["x"], target=0), True),
    ("permutation-multi-mask", "FeaturePermutation", (MI,), dict(**MULTI, target=1, feature_mask=MASKS2), True),
    ("occlusion", "Occlusion", (CNN,), dict(inputs=D["img"], sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2),
                                           target=1, baselines=0.2), False),
    ("occlusion-multi", "Occlusion", (MI,), dict(**MULTI, sliding_window_shapes=((2,), (1, 2)), target=0), False),
    ("shapley", "ShapleyValues", (ML,), dict(inputs=D["x"], target=T4), False),
    ("shapley-multi-mask", "ShapleyValues", (MI,),
     dict(**MULTI, target=1, feature_mask=MASKS2, baselines=(0.1, torch.ones(1, 2, 2))), False),
    ("lime-wls", "Lime", (ML,), dict(inputs=D["x"], target=T4, n_samples=30, feature_mask=MASK), True),
    ("lime-default-lasso", "Lime", (ML,), dict(inputs=D["x"], target=T4, n_samples=40, baselines=0.2), True),
    ("lime-multi", "Lime", (MI,), dict(**MULTI, target=1, n_samples=30, feature_mask=MASKS2), True),
    ("layer-ig", "LayerIntegratedGradients", (ML, ML.linear1), dict(inputs=D["x"], target=1, n_steps=12), False),
    ("layer-ig-delta", "LayerIntegratedGradients", (CNN, CNN.conv1),
     dict(inputs=D["img"], target=[0, 1, 2], baselines=0.1, return_convergence_delta=True), False),
    ("layer-ig-embedding", "LayerIntegratedGradients", (TXT, TXT.emb),
     dict(inputs=IDS, baselines=torch.zeros_like(IDS), target=1, additional_forward_args=(torch.ones(3, 5),),
          n_steps=20), False),
    ("layer-gradcam", "LayerGradCam", (CNN, CNN.conv1), dict(inputs=D["img"], target=2), False),
    ("layer-gradcam-relu", "LayerGradCam", (CNN, CNN.relu1), dict(inputs=D["img"], target=0,
                                                                   relu_attributions=True), False),
    ("layer-gradcam-per-channel", "LayerGradCam", (CNN, CNN.conv1),
     dict(inputs=D["img"], target=[2, 0, 1], attr_dim_summation=False), False),
    ("layer-activation", "LayerActivation", (MI, MI.fc), dict(**MULTI), False),
    ("layer-conductance", "LayerConductance", (ML, ML.linear1), dict(inputs=D["x"], target=0, n_steps=10), False),
    ("layer-conductance-delta", "LayerConductance", (CNN, CNN.relu1),
     dict(inputs=D["img"], target=1, n_steps=8, method="riemann_trapezoid", return_convergence_delta=True), False),
    ("layer-gxa", "LayerGradientXActivation", (MI, MI.fc), dict(**MULTI, target=0), False),
    ("layer-deeplift", "LayerDeepLift", (CNN, CNN.fc1), dict(inputs=D["img"], target=1, baselines=0.1), False),
    ("layer-ablation", "LayerFeatureAblation", (ML, ML.linear1), dict(inputs=D["x"], target=T4), False),
    ("neuron-grad", "NeuronGradient", (CNN, CNN.conv1), dict(inputs=D["img"], neuron_selector=(1, 2, 2)), False),
    ("neuron-ig", "NeuronIntegratedGradients", (ML, ML.linear1),
     dict(inputs=D["x"], neuron_selector=2, n_steps=10, baselines=0.2), False),
]


def _flat(v):
    return v if isinstance(v, tuple) else (v,)


def _close(ours, theirs, tol=1e-4):
    assert type(ours) is type(theirs) or isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor)
    for a, b in zip(_flat(ours), _flat(theirs)):
        assert a.shape == b.shape
        a, b = a.detach().double(), b.detach().double()
        assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max())), (a, b)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_equals_captum(case):
    name, cls, ctor, kwargs, seeded = case
    theirs_obj = getattr(C, cls)(*ctor)
    ours_obj = getattr(A, cls)(*ctor) if cls != "NoiseTunnel" else \
        A.NoiseTunnel(getattr(A, type(ctor[0]).__name__)(ctor[0].forward_func))      # wrap the compat class
    if name == "lime-wls":
        from captum._utils.models.linear_model import SkLearnLinearRegression
        theirs_obj = C.Lime(*ctor, interpretable_model=SkLearnLinearRegression())
        ours_obj = A.Lime(*ctor, interpretable_model=SkLearnLinearRegression())
    results = []
    for obj in (ours_obj, theirs_obj):
        if seeded:
            torch.manual_seed(7)
            np.random.seed(7)
        results.append(obj.attribute(**kwargs))
    ours, theirs = results
    if kwargs.get("return_convergence_delta"):
        assert isinstance(ours, tuple) and len(ours) == 2
        _close(ours[0], theirs[0])
        _close(ours[1], theirs[1])
    else:
        _close(ours, theirs)


def test_structure_follows_inputs():
    one = A.Saliency(ML).attribute((D["x"],), target=0)
    assert isinstance(one, tuple) and len(one) == 1 and one[0].shape == D["x"].shape
    assert isinstance(A.Saliency(ML).attribute(D["x"], target=0), torch.Tensor)


def test_tuple_target_on_a_multi_dimensional_output():
    class Grid(nn.Module):
        def forward(self, x):
            return (x.unsqueeze(1) * torch.arange(1.0, 4.0).view(1, 3, 1)).view(x.shape[0], 3, 3)
    x = torch.randn(2, 3)
    for target in [(1, 2), [(0, 1), (2, 0)]]:
        _close(A.Saliency(Grid()).attribute(x, target=target, abs=False),
               C.Saliency(Grid()).attribute(x.clone().requires_grad_(), target=target, abs=False))


def test_trapezoid_uses_weights_that_sum_to_one():
    """Captum's riemann_trapezoid weights sum to (n-1)/n; the compat class keeps attrkit's textbook rule."""
    lin = nn.Linear(4, 1)
    x = torch.randn(3, 4)
    ours = A.IntegratedGradients(lin).attribute(x, n_steps=7, method="riemann_trapezoid")
    theirs = C.IntegratedGradients(lin).attribute(x, n_steps=7, method="riemann_trapezoid")
    exact = (lin.weight * x).detach()
    assert torch.allclose(ours, exact, atol=1e-6)
    assert torch.allclose(theirs, exact * 6 / 7, atol=1e-5)


def test_deeplift_max_pool_stays_complete():
    """With max-pooling and per-sample baselines Captum's DeepLIFT loses completeness; attrkit's keeps it."""
    model, g = MaxPoolNet().eval(), torch.Generator().manual_seed(3)
    x, base = torch.randn(3, 1, 6, 6, generator=g), torch.randn(3, 1, 6, 6, generator=g)
    _, ours = A.DeepLift(model).attribute(x, base, target=1, return_convergence_delta=True)
    _, theirs = C.DeepLift(model).attribute(x, base, target=1, return_convergence_delta=True)
    assert float(ours.abs().max()) < 1e-5 < float(theirs.abs().max())


def test_sampled_shapley_is_within_its_sampling_error():
    """ShapleyValueSampling, 10 permutations of 12 features (Captum's n_samples meaning): attrkit's estimator
    differs from the exact values (ShapleyValues, equal to Captum's in CASES) by sampling noise only. Measured
    over seeds 0-19: largest error 0.018, mean 0.009 (values up to 0.25); Captum's own estimator: 0.017 / 0.011."""
    model, g = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1)), torch.Generator().manual_seed(4)
    x = torch.randn(2, 12, generator=g)
    exact = A.ShapleyValues(model).attribute(x, target=0)
    torch.manual_seed(0)
    est = A.ShapleyValueSampling(model).attribute(x, target=0, n_samples=10)
    assert 0 < float((est - exact).abs().max()) < 0.04
    assert torch.allclose(est.sum(1), exact.sum(1), atol=1e-5)        # efficiency holds exactly


def test_sampled_kernel_shap_is_within_its_sampling_error():
    """KernelShap, 200 evaluations for 12 features (n_samples keeps Captum's meaning): attrkit's paired estimator
    against the exact values. Measured over seeds 0-19: largest error 0.0024, mean 0.0017 (values up to 0.18);
    Captum's own KernelShap on the same case: 0.0135 / 0.0094."""
    model, g = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1)), torch.Generator().manual_seed(4)
    x = torch.randn(1, 12, generator=g)
    exact = A.ShapleyValues(model).attribute(x, target=0)
    torch.manual_seed(0)
    est = A.KernelShap(model).attribute(x, target=0, n_samples=200)
    assert 0 < float((est - exact).abs().max()) < 0.006
    assert torch.allclose(est.sum(), exact.sum(), atol=1e-5)          # efficiency holds exactly


def test_kernel_shap_is_exact_on_a_small_game():
    """KernelShap with n_samples >= 2^L - 2 uses every coalition once: the exact Shapley values."""
    exact = C.ShapleyValues(ML).attribute(D["x"], target=T4)
    _close(A.KernelShap(ML).attribute(D["x"], target=T4, n_samples=25), exact)
    per_feature = A.KernelShap(ML).attribute(D["x"], target=T4, n_samples=25, return_input_shape=False)
    assert per_feature.shape == (4, 3)


def test_target_none_with_several_outputs_is_refused():
    with pytest.raises(ValueError, match="give target="):
        A.FeatureAblation(ML).attribute(D["x"])


def test_lecture_feature_importance_code_runs_unchanged():
    """The lecture's "Feature importance" block, verbatim but for its import, gives Captum's numbers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    device = "cpu"
    code = LECTURE.replace("from captum import attr", "from attrkit.compat import captum as attr")
    results = {}
    for label, src in (("compat", code), ("captum", LECTURE)):
        torch.manual_seed(1)
        np.random.seed(1)
        scope = {"torch": torch, "model": model, "device": device}
        exec(src, scope)
        results[label] = scope
    for name in ("attribs_IG", "attribs_FA", "attribs_GS"):
        a, b = results["compat"][name], results["captum"][name]
        assert isinstance(a, np.ndarray) and a.shape == (100, 2)
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max()), name


LECTURE = """
from captum import attr

# Input and baseline
model.eval().to('cpu')
inputs = torch.randn(100, 2, dtype=torch.float32, requires_grad=True).to(device)
baseline = torch.zeros_like(inputs, dtype=torch.float32).to(device)

# Integrated Gradients
explain_IG = attr.IntegratedGradients(model)
attribs_IG = explain_IG.attribute(inputs, baselines=baseline, target=0)
attribs_IG = attribs_IG.detach().numpy()

# Feature ablation
explain_FA = attr.FeatureAblation(model)
attribs_FA = explain_FA.attribute(inputs)
attribs_FA = attribs_FA.detach().numpy()

# SHAP values
explain_GS = attr.GradientShap(model)
attribs_GS = explain_GS.attribute(inputs=inputs, baselines=baseline)
attribs_GS = attribs_GS.detach().numpy()
"""


# ------------------------------------------------------------------ captum.attr.visualization-style helpers
def test_visualize_image_attr_methods_and_signs():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from attrkit.compat import visualization as viz
    attr = np.zeros((4, 4, 3))
    attr[0, 0] = 1.0                    # raises the score
    attr[3, 3] = -1.0                   # lowers it
    image = np.full((4, 4, 3), 0.5)
    image[1, 1] = 1.0
    fig, ax = viz.visualize_image_attr(attr, image, method="heat_map", sign="all", outlier_perc=0,
                                       show_colorbar=True, title="t")
    shown = np.asarray(ax.images[0].get_array())
    assert shown[0, 0, 0] > shown[0, 0, 2] and shown[3, 3, 2] > shown[3, 3, 0]       # red vs blue
    assert np.allclose(shown[1, 2], 1.0) and ax.get_title() == "t"                    # zero: white
    _, ax = viz.visualize_image_attr(attr, image, method="heat_map", sign="positive", outlier_perc=0)
    assert np.allclose(np.asarray(ax.images[0].get_array())[3, 3], 1.0)               # negatives hidden
    _, ax = viz.visualize_image_attr(attr, image, method="masked_image", sign="absolute_value", outlier_perc=0)
    masked = np.asarray(ax.images[0].get_array())
    assert masked[0, 0].max() > 0 and np.allclose(masked[1, 1], 0.0)                  # only attributed pixels
    with pytest.raises(ValueError, match="one-sided sign"):
        viz.visualize_image_attr(attr, image, method="alpha_scaling", sign="all")
    with pytest.raises(ValueError, match="method must be one of"):
        viz.visualize_image_attr(attr, image, method="heatmap")


def test_visualize_image_attr_multiple_takes_tensors():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from attrkit.compat import visualization as viz
    attr = A.IntegratedGradients(CNN).attribute(D["img"], target=0, n_steps=8)
    fig, axes = viz.visualize_image_attr_multiple(attr[0], D["img"][0], ["original_image", "blended_heat_map",
                                                                         "alpha_scaling"],
                                                  ["all", "all", "positive"], titles=["x", "IG", "IG+"],
                                                  use_pyplot=False, cmap=None)
    assert len(axes) == 3 and [a.get_title() for a in axes] == ["x", "IG", "IG+"]
    assert np.asarray(axes[1].images[0].get_array()).shape[:2] == (6, 6)


def test_migrating_page_runs():
    """docs/migrating.md runs as written, and its Captum, compat and native forms give the same numbers."""
    import re
    from pathlib import Path
    pytest.importorskip("shap")
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    text = (Path(__file__).resolve().parents[1] / "docs" / "migrating.md").read_text()
    scope: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, "docs/migrating.md", "exec"), scope)
    s = scope
    _close(s["ig_compat"], s["ig_captum"])
    _close(s["delta_compat"], s["delta_captum"])
    _close(s["ig"].values, s["ig_captum"])
    _close(s["fa_compat"], s["fa_captum"])
    _close(s["fa"].values, s["fa_captum"])
    assert float(s["ig_tol"].info["relative_gap"].max()) <= 1e-3
    assert np.abs(s["kernel_compat"] - s["kernel_shap"]).max() < 1e-5
    assert np.abs(s["deep_compat"] - s["deep_shap"]).max() < 1e-5
    assert np.abs(s["explanation"].values - s["kernel_shap"]).max() < 1e-5
    assert np.abs(s["e"].values - s["kernel_shap"][..., 2]).max() < 1e-5


def test_last_attribution_carries_attrkits_error_figures():
    ig = A.IntegratedGradients(ML)
    values, delta = ig.attribute(D["x"], target=0, n_steps=16, return_convergence_delta=True)
    info = ig.last_attribution.info
    assert torch.allclose(info["completeness_gap"], delta.abs(), atol=1e-6)
    assert info["n_evals"] == 4 * 16 + 2 * 4 and ig.last_attribution.method == "integrated_gradients"


def test_layer_attribution_interpolate_and_token_reference():
    cam = A.LayerGradCam(CNN, CNN.conv1).attribute(D["img"], target=0)
    _close(A.LayerAttribution.interpolate(cam, (6, 6)), C.LayerAttribution.interpolate(cam, (6, 6)))
    assert torch.equal(A.TokenReferenceBase(3).generate_reference(4),
                       C.TokenReferenceBase(3).generate_reference(4, "cpu"))
