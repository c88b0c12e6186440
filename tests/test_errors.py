"""Bad input gets a clear error that names the problem, never a silent wrong answer."""
import pytest
import torch
from torch import nn

import attrkit as ak


def test_nan_and_inf_inputs(mlp):
    x = torch.randn(3, 5)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ak.explain(mlp, x, "saliency", target=0)
    x[1, 2] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        ak.explain(mlp, x, "integrated_gradients", target=0)


def test_nan_baseline(mlp):
    b = torch.zeros(1, 5)
    b[0, 0] = float("nan")
    with pytest.raises(ValueError, match="baseline contains 1 NaN"):
        ak.explain(mlp, torch.randn(2, 5), "integrated_gradients", target=0, baseline=b)


def test_baseline_shape_mismatch(mlp):
    with pytest.raises(ValueError, match="does not broadcast"):
        ak.explain(mlp, torch.randn(2, 5), "integrated_gradients", target=0, baseline=torch.zeros(3, 4))


def test_target_out_of_range(mlp):
    with pytest.raises(ValueError, match="target 3 is out of range.*3 outputs"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target=3)
    with pytest.raises(ValueError, match="out of range"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target=[0, -1])
    with pytest.raises(ValueError, match="2 samples"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target=[0, 1, 2])
    with pytest.raises(TypeError, match="integer class indices"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target=torch.tensor([0.5, 1.0]))


def test_unknown_layer_lists_close_names(cnn):
    with pytest.raises(ValueError, match=r"no layer named 'features\.22'.*'features\.2'"):
        ak.explain(cnn, torch.rand(1, 3, 16, 16), "saliency", target=0, layer="features.22")


def test_unknown_method_lists_registry(mlp):
    with pytest.raises(ValueError, match=r"unknown method 'integrated_gradient'.*integrated_gradients"):
        ak.explain(mlp, torch.randn(1, 5), "integrated_gradient")


def test_unknown_option(mlp):
    with pytest.raises(TypeError, match="does not take option.*'stepz'"):
        ak.explain(mlp, torch.randn(1, 5), "integrated_gradients", stepz=3)


def test_bad_rule_and_steps(mlp):
    with pytest.raises(ValueError, match="unknown rule"):
        ak.explain(mlp, torch.randn(1, 5), "integrated_gradients", rule="simpson")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ak.explain(mlp, torch.randn(1, 5), "integrated_gradients", steps=0)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(x.detach())


class Argmaxed(nn.Module):
    def forward(self, x):
        return torch.nn.functional.one_hot(x.argmax(1), 4).float()


@pytest.mark.parametrize("model", [Detached(), Argmaxed()])
def test_non_differentiable_model(model):
    with pytest.raises(ValueError, match="does not depend differentiably"):
        ak.explain(model, torch.randn(2, 4), "integrated_gradients", target=0)


def test_bad_inputs_types_and_shapes(mlp):
    with pytest.raises(TypeError, match="torch.Tensor"):
        ak.explain(mlp, [[1.0] * 5], "saliency")
    with pytest.raises(ValueError, match="leading sample dimension"):
        ak.explain(mlp, torch.randn(5), "saliency")
    with pytest.raises(TypeError, match="target must be"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target="cat")


def test_multi_dim_output_needs_callable_target():
    seg = nn.Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="callable"):
        ak.explain(seg, torch.rand(1, 3, 4, 4), "saliency", target=1)


def test_callable_target_wrong_shape(mlp):
    with pytest.raises(ValueError, match="one scalar per sample"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", target=lambda out: out)


def test_reused_layer_is_refused():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2))
    with pytest.raises(ValueError, match="more than once"):
        ak.explain(model, torch.randn(2, 4), "integrated_gradients", target=0, layer="1")


def test_bad_batch_size(mlp):
    with pytest.raises(ValueError, match="batch_size"):
        ak.explain(mlp, torch.randn(2, 5), "saliency", batch_size=0)


def test_torchscript_models(cnn):
    """A scripted model works for input-level methods (same values as eager) and is refused, with the way out,
    where a method needs hooks on its layers."""
    scripted = torch.jit.script(cnn.eval())
    x = torch.rand(2, 3, 16, 16)
    for name in ("saliency", "integrated_gradients", "occlusion"):
        opts = {"window": 4, "stride": 4} if name == "occlusion" else {}
        a, b = ak.explain(scripted, x, name, target=1, **opts), ak.explain(cnn, x, name, target=1, **opts)
        assert torch.allclose(a.values, b.values, atol=1e-5)
    for name, kw in (("grad_cam", {}), ("lrp", {}), ("saliency", {"layer": "features.0"})):
        with pytest.raises(TypeError, match="TorchScript modules do not support"):
            ak.explain(scripted, x, name, target=1, **kw)
