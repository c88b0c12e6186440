"""Incremental occlusion (attrkit.games.incremental): recomputing only each window's receptive-field cone gives
the whole network's values, on plain, VGG-style (max pools, padding, stride, BatchNorm) and residual CNNs;
it refuses with a reason where it cannot follow the network, and its cost model picks the whole network when
the cones cover the map."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.games import incremental

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture
def deep(monkeypatch):
    """Overheads (per step, gathers, paste) off: on these small inputs the cost model then follows the cones to
    the deepest switch, so every layer's cone is exercised."""
    for name in ("STEP_COST", "ASSEMBLE_COST", "PASTE_COST"):
        monkeypatch.setattr(incremental, name, 0.0)


def _seed(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):           # eval-mode statistics that are not the identity
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def small_cnn():
    torch.manual_seed(0)
    return _seed(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                               nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 4)))


def vgg_style():
    """Max pools (one in ceil mode), unpadded, strided, dilated, grouped and 'same' convolutions, BatchNorm,
    an average pool and an adaptive pooling head."""
    torch.manual_seed(1)
    return _seed(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding="same", dilation=2, groups=2), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3), nn.BatchNorm2d(12), nn.ReLU(),                     # no padding
        nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.ReLU6(),
        nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.AvgPool2d(2, stride=1),
        nn.Conv2d(12, 16, 1), nn.Sigmoid(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)))


class Block(nn.Module):
    """A residual block (optionally downsampling with a 1x1 strided shortcut, as ResNet's)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(c_out)
        self.short = nn.Identity() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def _both(model, x, **kw):
    inc = ak.explain(model, x, "occlusion", local=True, **kw)
    whole = ak.explain(model, x, "occlusion", local=False, **kw)
    assert inc.info["local_choice"]["plan"].startswith("incremental"), inc.info["local_choice"]
    assert whole.info["local_choice"]["plan"] == "whole network"
    torch.testing.assert_close(inc.info["window_values"], whole.info["window_values"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(inc.values, whole.values, rtol=RTOL, atol=ATOL)
    assert inc.info["n_evals"] == whole.info["n_evals"]
    return inc, whole


def test_small_cnn_equals_whole_network(deep):
    x = torch.rand(2, 3, 24, 24)
    inc, _ = _both(small_cnn(), x, window=5, stride=3, target=1)      # windows clipped at the border
    assert inc.info["local_choice"]["switch"] == "3"                     # after the last ReLU
    assert inc.info["window_values"].abs().max() > 1e-4                  # windows change the output


@pytest.mark.parametrize("size,window,stride,switch", [(33, 4, 2, "10"), (65, 7, 5, "14")])
def test_vgg_style_with_pools_padding_stride_batchnorm(size, window, stride, switch, deep):
    x = torch.randn(1, 3, size, size - 2)                                # odd sizes: ceil-mode and edge windows
    inc, _ = _both(vgg_style(), x, window=window, stride=stride, target=2, baseline="blur")
    assert inc.info["local_choice"]["switch"] == switch                  # "14": through both pools and the 1x1
    assert inc.info["local_choice"]["estimated_macs"] < inc.info["local_choice"]["whole_macs"]


def test_residual_blocks_with_downsampling_shortcut(deep):
    x = torch.randn(2, 3, 20, 20)
    inc, _ = _both(ResNetLike().eval(), x, window=4, stride=4, all_classes=True)
    assert inc.info["local_choice"]["switch"] == "relu_3"                # after both blocks
    torch.testing.assert_close(inc.info["values_all"], ak.explain(ResNetLike().eval(), x, "occlusion", window=4,
                               stride=4, all_classes=True, local=False).info["values_all"], rtol=RTOL, atol=ATOL)


def test_windows_over_single_channels_and_a_tensor_baseline(deep):
    model, x = small_cnn(), torch.rand(1, 3, 24, 24)
    ref = torch.rand(1, 3, 24, 24)
    inc, _ = _both(model, x, window=(1, 6, 6), stride=(1, 4, 4), baseline=ref, target=0)
    assert inc.info["window_values"].shape == (1, 3 * 6 * 6)               # ceil((24 - 6) / 4) + 1 = 6 per dim


def test_refuses_with_a_reason_where_it_cannot_follow():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 16 * 16, 2)).eval()
    x = torch.rand(1, 3, 16, 16)
    a = ak.explain(model, x, "occlusion", window=4, stride=2)                     # 49 windows
    assert a.info["local_choice"]["plan"] == "whole network"
    assert "reflect" in a.info["local_choice"]["why"]
    with pytest.raises(ValueError, match="local=True.*reflect"):
        ak.explain(model, x, "occlusion", window=4, stride=2, local=True)
    with pytest.raises(ValueError, match="layer game"):
        ak.explain(small_cnn(), torch.rand(1, 3, 24, 24), "occlusion", layer="1", local=True)


def test_cost_model_picks_the_whole_network_when_cones_cover_the_map():
    x = torch.rand(2, 3, 24, 24)
    a = ak.explain(small_cnn(), x, "occlusion", window=18, stride=1, target=0)     # huge windows, tiny net
    choice = a.info["local_choice"]
    assert choice["plan"] == "whole network" and "at least 20%" in choice["why"], choice
    few = ak.explain(small_cnn(), x, "occlusion", window=12, stride=12, target=0).info["local_choice"]
    assert few["plan"] == "whole network" and "do not pay for a plan" in few["why"], few
    big = ak.explain(vgg_style(), torch.randn(1, 3, 64, 64), "occlusion", window=4, stride=4, target=0)
    assert big.info["local_choice"]["plan"].startswith("incremental"), big.info["local_choice"]


@pytest.mark.parametrize("shape", [(7,), (2, 5, 6), (1, 3, 4, 5)])
def test_box_sums_equal_the_dense_mask_sums(shape):
    """The difference-array window sums equal sum_w value_w * 1[box_w] computed with dense masks."""
    g = torch.Generator().manual_seed(len(shape))
    boxes = []
    for _ in range(9):
        box = []
        for m in shape:
            a = int(torch.randint(0, m, (1,), generator=g))
            box.append((a, int(torch.randint(a + 1, m + 1, (1,), generator=g))))
        boxes.append(box)
    vals = torch.randn(2, 9, 3, generator=g, dtype=torch.float64)
    mask = torch.zeros((9,) + shape, dtype=torch.float64)
    for j, box in enumerate(boxes):
        mask[(j,) + tuple(slice(a, b) for a, b in box)] = 1.0
    acc, count = incremental.box_sums(vals, boxes, shape)
    torch.testing.assert_close(acc, torch.einsum("nwk,wp->nkp", vals, mask.view(9, -1)), rtol=0, atol=1e-12)
    torch.testing.assert_close(count, mask.view(9, -1).sum(0), rtol=0, atol=0)
