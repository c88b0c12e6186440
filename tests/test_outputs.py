"""Structured model outputs: tuples, lists, dicts, dataclasses, Hugging Face-style ``ModelOutput``s (an
OrderedDict subclass with attributes) and per-image lists of dicts (detection), selected with ``target=``."""
from collections import OrderedDict, namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import attrkit as ak
from conftest import TinyCNN


class Output(OrderedDict):
    """What transformers' ModelOutput is: an ordered dict whose fields are also attributes, None fields absent."""

    def __init__(self, **kw):
        super().__init__((k, v) for k, v in kw.items() if v is not None)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class DataOut:
    hidden: torch.Tensor
    logits: torch.Tensor


Pair = namedtuple("Pair", ["aux", "main"])


class Structured(nn.Module):
    """TinyCNN's logits returned inside a structure (plus a decoy tensor of another shape)."""

    def __init__(self, kind):
        super().__init__()
        self.net, self.kind = TinyCNN(), kind

    def forward(self, x):
        logits = self.net(x)
        decoy = logits.sum(1, keepdim=True) * 0 + x.flatten(1)[:, :7]
        if self.kind == "tuple":
            return decoy, logits
        if self.kind == "list":
            return [logits, decoy]
        if self.kind == "dict":
            return {"aux": decoy, "scores": logits}
        if self.kind == "logits_dict":
            return {"hidden": decoy, "logits": logits}
        if self.kind == "dataclass":
            return DataOut(hidden=decoy, logits=logits)
        if self.kind == "model_output":
            return Output(loss=None, logits=logits, hidden_states=decoy)
        if self.kind == "namedtuple":
            return Pair(decoy, logits)
        if self.kind == "single":
            return (logits,)
        raise AssertionError(self.kind)


def _x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


SELECT = {"tuple": (1,), "list": (0,), "dict": ("scores",), "logits_dict": (), "dataclass": (),
          "model_output": (), "namedtuple": ("main",), "single": ()}


@pytest.mark.parametrize("kind", list(SELECT))
@pytest.mark.parametrize("method", ["integrated_gradients", "kernel_shap", "lrp", "grad_cam", "occlusion"])
def test_structured_output_equals_the_plain_model(kind, method):
    model = Structured(kind).eval()
    x, t = _x(), [0, 2, 1]
    opts = {"steps": 8} if method == "integrated_gradients" else {"n_samples": 40, "seed": 0} \
        if method == "kernel_shap" else {}
    layer = {"layer": "features.2"} if method == "grad_cam" else {}
    plain = ak.explain(model.net, x, method, target=t, **opts, **layer)
    target = SELECT[kind] + (t,) if SELECT[kind] else t
    ours = ak.explain(model, x, method, target=target, **opts, **({"layer": "net.features.2"} if layer else {}))
    assert torch.allclose(ours.values, plain.values, rtol=1e-5, atol=1e-7)
    assert torch.equal(ours.outputs, plain.outputs)
    if SELECT[kind]:
        assert repr(SELECT[kind][0]) in str(ours.target) or torch.equal(ours.target, torch.tensor(t))


def test_selection_by_field_name_position_and_predicted_class():
    model = Structured("model_output").eval()
    x = _x()
    logits = model.net(x)
    a = ak.explain(model, x, "saliency", target=("logits", 3))
    b = ak.explain(model, x, "saliency", target=(0, 3))             # the first field of the output
    c = ak.explain(model.net, x, "saliency", target=3)
    assert torch.allclose(a.values, c.values) and torch.allclose(b.values, c.values)
    d = ak.explain(model, x, "saliency", target=("logits", None))   # predicted class of the logits
    assert torch.equal(d.target, logits.argmax(1))
    e = ak.explain(model, x, "saliency", target="logits")
    assert torch.equal(e.target, logits.argmax(1))


def test_a_layer_game_splits_a_structured_model():
    """A layer game on a model returning a dict: the head after the layer still selects the output."""
    model = Structured("dict").eval()
    x = _x()
    plain = ak.explain(model.net, x, "shapley", target=1, layer="features.3", players="channels")
    ours = ak.explain(model, x, "shapley", target=("scores", 1), layer="net.features.3", players="channels")
    assert torch.allclose(ours.values, plain.values, rtol=1e-5, atol=1e-7)


def test_without_a_selector_the_error_says_how_to_choose():
    x = _x()
    for kind in ("tuple", "dict", "namedtuple"):
        with pytest.raises(ValueError, match=r"target=\(field, class\)"):
            ak.explain(Structured(kind).eval(), x, "saliency", target=1)
    with pytest.raises(ValueError, match="no field 'nope'.*choose one of"):
        ak.explain(Structured("dict").eval(), x, "saliency", target=("nope", 1))
    with pytest.raises(ValueError, match="no field 5"):
        ak.explain(Structured("tuple").eval(), x, "saliency", target=(5, 1))
    with pytest.raises(ValueError, match="out of range"):
        ak.explain(Structured("dataclass").eval(), x, "saliency", target=("logits", 9))


class Detector(nn.Module):
    """Returns one dict per image (torchvision's detection convention): boxes, labels and scores."""

    def __init__(self):
        super().__init__()
        self.net = TinyCNN(classes=4)

    def forward(self, x):
        s = torch.sigmoid(self.net(x))
        return [{"boxes": torch.zeros(4, 4), "labels": torch.arange(4), "scores": s[i]} for i in range(x.shape[0])]


def test_detection_lists_of_dicts_work_through_a_callable_target():
    model = Detector().eval()
    x = _x()

    def best_score(out):
        return torch.stack([o["scores"].max() for o in out])

    a = ak.explain(model, x, "integrated_gradients", target=best_score, steps=8)
    assert a.target == "callable:best_score" and a.outputs.shape == (3,)
    # the same as the equivalent tensor model
    plain = ak.explain(lambda z: torch.sigmoid(model.net(z)).max(1).values, x, "integrated_gradients", steps=8)
    assert torch.allclose(a.values, plain.values, rtol=1e-5, atol=1e-7)
    k = ak.explain(model, x, "kernel_shap", target=best_score, n_samples=40, seed=0)
    assert torch.isfinite(k.values).all()
    with pytest.raises(ValueError, match=r"say which output|target="):
        ak.explain(model, x, "saliency")


def test_hugging_face_model_output_when_installed():
    transformers = pytest.importorskip("transformers.modeling_outputs")

    class HF(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = TinyCNN()

        def forward(self, pixel_values):
            return transformers.ImageClassifierOutput(logits=self.net(pixel_values))

    model, x = HF().eval(), _x()
    a = ak.explain(model, {"pixel_values": x}, "integrated_gradients", target=2, steps=8)
    b = ak.explain(model.net, x, "integrated_gradients", target=2, steps=8)
    assert torch.allclose(a.values["pixel_values"], b.values, rtol=1e-5, atol=1e-7)
