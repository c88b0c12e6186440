"""Agreement with Captum 0.9 where both compute the same quantity: GuidedBackprop, Deconvolution,
LayerGradCam, GuidedGradCam, DeepLift and LayerDeepLift (1e-4 relative).

Zennit and pytorch-grad-cam need torchvision, which does not import beside this environment's torch: they are
compared by ``make crosscheck`` (crosscheck/compare.py) in an environment of their own.
"""
import warnings

import pytest
import torch
from torch import nn

import attrkit as ak

captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency (pip install attrkit[test])")


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture
def setup(trained_cnn):
    model, x = trained_cnn           # conv-relu-conv-relu-maxpool-linear-relu-linear, trained on digits
    return model, x[:4].clone(), torch.tensor([0, 3, 5, 9])


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_guided_backprop_and_deconvolution(setup):
    model, x, t = setup
    theirs = _quiet(captum_attr.GuidedBackprop(model).attribute, x.clone(), target=t)
    assert rel(ak.explain(model, x, "guided_backprop", target=t).values, theirs) < 1e-4
    theirs = _quiet(captum_attr.Deconvolution(model).attribute, x.clone(), target=t)
    assert rel(ak.explain(model, x, "deconvnet", target=t).values, theirs) < 1e-4


@pytest.mark.parametrize("layer", ["0", "2", "3"])
def test_layer_grad_cam(setup, layer):
    model, x, t = setup
    module = dict(model.named_modules())[layer]
    theirs = captum_attr.LayerGradCam(model, module).attribute(x, target=t)
    assert rel(ak.explain(model, x, "grad_cam", target=t, layer=layer, relu=False).values, theirs) < 1e-4
    theirs = captum_attr.LayerGradCam(model, module).attribute(x, target=t, relu_attributions=True)
    assert rel(ak.explain(model, x, "grad_cam", target=t, layer=layer).values, theirs) < 1e-4


def test_guided_grad_cam(setup):
    model, x, t = setup
    theirs = _quiet(captum_attr.GuidedGradCam(model, model[2]).attribute, x.clone(), target=t)
    ours = ak.explain(model, x, "guided_grad_cam", target=t, layer="2", interpolate="nearest").values
    assert rel(ours, theirs) < 1e-4


def test_deeplift_and_layer_deeplift():
    """On a network where Captum's hooks are right (no nonlinearity feeding another one directly)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                          nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(8 * 16, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    base = torch.full_like(x, 0.2)
    t = torch.tensor([0, 3, 5, 9])
    ours = ak.explain(model, x, "deeplift", target=t, baseline=base)
    theirs, delta = _quiet(captum_attr.DeepLift(model).attribute, x, baselines=base, target=t,
                           return_convergence_delta=True)
    assert rel(ours.values, theirs) < 1e-4
    assert float(ours.info["completeness_gap"].max()) < 1e-5 and float(delta.abs().max()) < 1e-5
    for layer in ("2", "4"):
        theirs = _quiet(captum_attr.LayerDeepLift(model, dict(model.named_modules())[layer]).attribute,
                        x, baselines=base, target=t)
        assert rel(ak.explain(model, x, "deeplift", target=t, baseline=base, layer=layer).values, theirs) < 1e-4


def test_deeplift_where_captum_breaks_summation_to_delta(setup):
    """ReLU feeding MaxPool: Captum 0.9 mixes the two modules' tensor hooks (captum issues #1104, #1276) and
    misses f(x) - f(r) by up to ~1e-2 here; ours keeps summation-to-delta to float precision."""
    model, x, t = setup
    base = torch.full_like(x, 0.2)
    ours = ak.explain(model, x, "deeplift", target=t, baseline=base)
    assert float(ours.info["completeness_gap"].max()) < 1e-5
    _, delta = _quiet(captum_attr.DeepLift(model).attribute, x, baselines=base, target=t,
                      return_convergence_delta=True)
    assert float(ours.info["completeness_gap"].max()) < float(delta.abs().max())
