"""Class activation maps: closed forms on a global-average-pooling network, independent re-computations of the
perturbation CAMs, layer handling, and the pointing game on the two-object image set."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak
from conftest import record

GRADIENT_CAMS = ["grad_cam", "grad_cam_pp", "hires_cam", "layer_cam", "xgrad_cam"]
ALL_CAMS = GRADIENT_CAMS + ["score_cam", "ablation_cam", "eigen_cam", "guided_grad_cam"]


class GapNet(nn.Module):
    """conv-relu-conv-relu-global average pool-linear: the CAM architecture of Zhou et al. 2016."""

    def __init__(self, dead_channel=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.relu1 = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(5, 3)
        if dead_channel:
            self.conv2.bias.data[0] = -100.0        # channel 0 is zero everywhere after the ReLU
        self.eval()

    def features(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))

    def head(self, a):
        return self.fc(self.gap(a).flatten(1))

    def forward(self, x):
        return self.head(self.features(x))


class Untraceable(GapNet):
    """Python control flow on a tensor value: torch.fx cannot split it."""

    def forward(self, x):
        a = self.features(x)
        if float(a.sum()) > -1e9:
            return self.head(a)
        return self.head(a) * 0


def rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture
def gap():
    model = GapNet()
    x = torch.rand(4, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    return model, x, torch.tensor([0, 2, 1, 2])


# ------------------------------------------------------------------------------ closed forms
def test_gradient_cams_closed_form_on_gap_network(gap):
    """At the last ReLU the gradient of class c is W[c, k] / (h w) everywhere, so every map is known."""
    model, x, t = gap
    with torch.no_grad():
        acts = model.features(x)
    hw = acts.shape[2] * acts.shape[3]
    g = (model.fc.weight.detach()[t] / hw)[:, :, None, None]           # [N, K, 1, 1]
    s = acts.sum((2, 3), keepdim=True)
    aij = torch.where(g != 0, g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6), torch.zeros(()))
    expected = {
        "grad_cam": (g * acts).sum(1, keepdim=True),
        "hires_cam": (g * acts).sum(1, keepdim=True),
        "xgrad_cam": ((g * acts / (s + 1e-7)).sum((2, 3), keepdim=True) * acts).sum(1, keepdim=True),
        "layer_cam": (g.clamp(min=0) * acts).sum(1, keepdim=True),
        "grad_cam_pp": ((hw * g.clamp(min=0) * aij) * acts).sum(1, keepdim=True),
    }
    for name, want in expected.items():
        a = ak.explain(model, x, name, target=t, layer="relu2", relu=False)
        assert a.values.shape == (4, 1, 6, 6)
        assert rel(a.values, want) < 1e-5, name
    assert rel(expected["xgrad_cam"], expected["grad_cam"]) < 1e-5       # XGrad-CAM = Grad-CAM here (CAM)


class FlatNet(GapNet):
    """The GAP network with a linear head on the flattened activations: the gradient at relu2 varies over
    positions (G[k, i, j] = W[c, k, i, j]), so Grad-CAM, HiResCAM, XGrad-CAM, LayerCAM and Grad-CAM++ differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(5 * 6 * 6, 3)
        self.eval()

    def head(self, a):
        return self.fc(a.flatten(1))


def test_gradient_cams_closed_form_where_they_differ():
    model = FlatNet()
    x = torch.rand(4, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        acts = model.features(x)
    g = model.fc.weight.detach()[t].view(acts.shape)                     # the gradient at relu2, [N, K, 6, 6]
    s = acts.sum((2, 3), keepdim=True)
    aij = torch.where(g != 0, g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6), torch.zeros(()))
    cam = lambda w: (w * acts).sum(1, keepdim=True)
    expected = {
        "grad_cam": cam(g.mean((2, 3), keepdim=True)),
        "hires_cam": cam(g),
        "xgrad_cam": cam((g * acts).sum((2, 3), keepdim=True) / (s + 1e-7)),
        "layer_cam": cam(g.clamp(min=0)),
        "grad_cam_pp": cam((g.clamp(min=0) * aij).sum((2, 3), keepdim=True)),
    }
    for name, want in expected.items():
        a = ak.explain(model, x, name, target=t, layer="relu2", relu=False)
        assert rel(a.values, want) < 1e-5, name
    names = list(expected)
    for i, m in enumerate(names):        # the closed forms are five different maps here
        for other in names[i + 1:]:
            assert rel(expected[m], expected[other]) > 0.1, (m, other)


def test_relu_option_keeps_signed_map_in_info(gap):
    model, x, t = gap
    signed = ak.explain(model, x, "grad_cam", target=t, relu=False)
    assert (signed.values < 0).any()
    rect = ak.explain(model, x, "grad_cam", target=t)
    assert torch.equal(rect.info["raw"], signed.values)
    assert torch.equal(rect.values, signed.values.clamp(min=0))
    assert rect.layer == "relu2"          # default: the last stage's output (the rectified last conv maps)
    assert "'relu2'" in rect.info["layer_choice"] and "last stage" in rect.info["layer_choice"]
    assert rect.heatmap().shape == (4, 6, 6)


def test_eigen_cam_is_the_first_principal_component(gap):
    model, x, _ = gap
    with torch.no_grad():
        acts = model.conv2(model.relu1(model.conv1(x))).double().numpy()
    a = ak.explain(model, x, "eigen_cam", relu=False, layer="conv2").values[:, 0].double().numpy()
    for i in range(len(x)):
        m = acts[i].reshape(acts.shape[1], -1).T
        m = m - m.mean(0)
        proj = m @ np.linalg.svd(m, full_matrices=False)[2][0]
        if abs(proj.min()) > abs(proj.max()):
            proj = -proj
        assert np.allclose(a[i].reshape(-1), proj, atol=1e-5)
    assert ak.explain(model, x, "eigen_cam", target=0).info["class_agnostic"]


def _score_cam_by_hand(model, x, t, layer_acts, softmax=True):
    n, k = layer_acts.shape[:2]
    scores = torch.zeros(n, k, dtype=torch.float64)
    with torch.no_grad():
        base = model(x * 0).gather(1, t.view(-1, 1)).squeeze(1).double()
        for i in range(n):
            for c in range(k):
                m = F.interpolate(layer_acts[i:i + 1, c:c + 1], size=x.shape[2:], mode="bilinear",
                                  align_corners=True)
                m = (m - m.min()) / (m.max() - m.min() + 1e-8)
                scores[i, c] = model(x[i:i + 1] * m)[0, t[i]]
    w = torch.softmax(scores, 1) if softmax else scores - base[:, None]
    return (w[:, :, None, None].float() * layer_acts).sum(1, keepdim=True)


@pytest.mark.parametrize("softmax", [True, False])
def test_score_cam_equals_a_loop_over_channels(softmax):
    model = GapNet(dead_channel=True)
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 0, 2])
    with torch.no_grad():
        acts = model.features(x)
    a = ak.explain(model, x, "score_cam", target=t, layer="relu2", relu=False, softmax=softmax, batch_size=4)
    assert a.info["constant_channels"] >= 3            # the dead channel (at least), once per sample
    assert rel(a.values, _score_cam_by_hand(model, x, t, acts, softmax)) < 1e-5


@pytest.mark.parametrize("cls", [GapNet, Untraceable])
def test_ablation_cam_equals_a_loop_over_channels(cls):
    model = cls()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([2, 2, 0])
    with torch.no_grad():
        acts = model.features(x)
        y = model.head(acts).gather(1, t.view(-1, 1))
        drops = []
        for c in range(acts.shape[1]):
            ablated = acts.clone()
            ablated[:, c] = 0
            drops.append((y - model.head(ablated).gather(1, t.view(-1, 1))) / y)
        w = torch.cat(drops, 1)
    want = (w[:, :, None, None] * acts).sum(1, keepdim=True)
    a = ak.explain(model, x, "ablation_cam", target=t, layer="relu2", relu=False, batch_size=2)
    assert rel(a.values, want) < 1e-5
    assert a.info["split"] == ("tail" if cls is GapNet else "full forward (layer output replaced)")


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(gap):
    model, x, t = gap
    cam = ak.explain(model, x, "grad_cam", target=t, layer="conv1").values
    gb = ak.explain(model, x, "guided_backprop", target=t).values
    up = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    got = ak.explain(model, x, "guided_grad_cam", target=t, layer="conv1")
    assert got.values.shape == x.shape
    assert rel(got.values, gb * up) < 1e-6
    near = ak.explain(model, x, "guided_grad_cam", target=t, layer="conv1", interpolate="nearest").values
    assert rel(near, gb * F.interpolate(cam, size=x.shape[2:], mode="nearest")) < 1e-6


# ---------------------------------------------------------------------------- layers, batches
def test_batch_sizes_and_targets(gap):
    """(tests/test_contract.py runs every method at batch sizes 1, 2, 3; here the batched perturbation CAMs
    with chunks that split one sample's channels.)"""
    model, x, t = gap
    for name in ("score_cam", "ablation_cam"):
        runs = [ak.explain(model, x, name, target=t, layer="relu2", batch_size=b).values for b in (1, 3, 7)]
        for r in runs[1:]:
            assert rel(r, runs[0]) < 1e-6
        one = ak.explain(model, x[1:2], name, target=int(t[1]), layer="relu2").values
        assert rel(one[0], runs[0][1]) < 1e-6


def test_layer_errors_and_default_layer(gap):
    model, x, _ = gap
    mlp = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="no Conv1d/Conv2d/Conv3d layer"):
        ak.explain(mlp, torch.randn(2, 4), "grad_cam")
    with pytest.raises(ValueError, match=r"\[N, channels, \*spatial\]"):
        ak.explain(model, x, "grad_cam", layer="fc")
    with pytest.raises(ValueError, match="interpolate"):
        ak.explain(model, x, "guided_grad_cam", interpolate="cubic")
    assert ak.methods()["score_cam"].layer == "required" and not ak.methods()["score_cam"].gradients


def test_one_dimensional_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = torch.rand(2, 2, 10)
    for name in ALL_CAMS:
        a = ak.explain(model, x, name, target=1)
        assert a.heatmap().shape == (2, 10), name


# ------------------------------------------------------------------------------ pointing game
def test_pointing_game_on_two_object_images(capsys):
    """Grad-CAM for each of the two classes present (A = first label, B = second) points at its own object."""
    from attrkit import zoo
    from attrkit.data import shapes_pairs

    model = zoo.pretrained("shapes_cnn", progress=False)
    pairs = shapes_pairs(n=80, size=64, seed=0, progress=False)
    idx = torch.arange(len(pairs.y))
    figures = {}
    for j, name in ((0, "A"), (1, "B")):
        cls = pairs.y[:, j]
        a = ak.explain(model, pairs.x, "grad_cam", target=cls, batch_size=80)   # default layer: last ReLU
        assert a.layer == model.last_relu
        h = a.heatmap()
        own, other = pairs.masks[idx, cls], pairs.masks[idx, pairs.y[:, 1 - j]]
        peak = h.flatten(1).argmax(1)
        hit = own.flatten(1)[idx, peak].float().mean().item()
        hit_other = other.flatten(1)[idx, peak].float().mean().item()
        pos = h.clamp(min=0)
        mass_own, mass_other = (pos * own).flatten(1).sum(1), (pos * other).flatten(1).sum(1)
        figures[name] = (hit, hit_other, (mass_own > mass_other).float().mean().item())
    with capsys.disabled():
        for name, (hit, hit_other, more) in figures.items():
            print(f"\npointing game class {name}: peak on own object {hit:.2f}, on the other object "
                  f"{hit_other:.2f}; more positive mass on own object in {more:.2f} of images")
    for name, (hit, hit_other, more) in figures.items():
        # spread over the shipped zoo (1, 2 threads, mkldnn off) and the zoo retrained with 2 threads and seeds
        # 1, 2 (conftest.py): hit minus other 0.34..0.61 (A), 0.36..0.58 (B); more mass 0.74..0.91 (A), 0.76..0.89 (B)
        assert record(f"cam_pointing_{name}_hit_minus_other", hit - hit_other) > 0
        assert record(f"cam_pointing_{name}_more_mass", more) > 0.5
