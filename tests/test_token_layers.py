"""CAMs on token layers (ViT tokens, channels-last maps), tuple-returning layers, and the automatic layer."""
import pytest
import torch
from torch import nn

import attrkit as ak
from nets_transformer import DenseLike, ResNetLike, SwinLike, TinyViT

def maybe_scale(h, scale):
    """A call the fx tracer keeps as one node; it reads a forward argument left at its default (None)."""
    return h if scale is None else h * scale


torch.fx.wrap("maybe_scale")

CAMS = ["grad_cam", "grad_cam_pp", "hires_cam", "layer_cam", "xgrad_cam", "eigen_cam", "score_cam",
        "ablation_cam"]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture
def images():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("registers", [0, 2])
def test_vit_token_layer_reads_as_patch_grid(images, registers):
    """Every CAM at a block's [N, 1 + r + 16, D] output = the same CAM given the explicit reshape (tokens after
    the prefix, row-major 4 x 4), as pytorch-grad-cam's documented reshape_transform does."""
    model = TinyViT(registers=registers, pool="mean")
    p = 1 + registers
    manual = lambda t: t[:, p:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)
    for name in CAMS:
        auto = ak.explain(model, images, name, target=1, layer="blocks.1")
        if name != "ablation_cam":            # a callable view cannot be written back into the tokens
            given = ak.explain(model, images, name, target=1, layer="blocks.1", reshape=manual)
            assert rel(auto.values, given.values) < 1e-6, name
        as_dict = ak.explain(model, images, name, target=1, layer="blocks.1", reshape={"prefix": p, "grid": (4, 4)})
        assert auto.values.shape == (3, 1, 4, 4) and rel(auto.values, as_dict.values) < 1e-6, name
        assert f"first {p} token" in auto.info["layer_grid"]
        assert auto.heatmap().shape == (3, 16, 16)


def test_grad_cam_on_tokens_closed_form(images):
    """Grad-CAM at tokens = sum_d mean_patches(dy/dA_d) A_d over the patch tokens (prefix dropped), by autograd."""
    model = TinyViT(pool="mean")
    acts = {}
    h = model.blocks[0].register_forward_hook(lambda m, i, o: acts.update(a=o))
    y = model(images)[:, 2].sum()
    h.remove()
    g = torch.autograd.grad(y, acts["a"])[0][:, 1:]
    a = acts["a"][:, 1:].detach()
    want = (g.mean(1, keepdim=True) * a).sum(-1).reshape(3, 1, 4, 4).clamp(min=0)
    got = ak.explain(model, images, "grad_cam", target=2, layer="blocks.0")
    assert rel(got.values, want) < 1e-5


def test_channels_last_layer_reads_right(images):
    model = SwinLike()
    manual = lambda t: t.permute(0, 3, 1, 2)
    for name in ("grad_cam", "hires_cam", "ablation_cam"):
        auto = ak.explain(model, images, name, target=0, layer="stage")
        assert auto.values.shape == (3, 1, 4, 4), name
        assert "channels-last" in auto.info["layer_grid"]
        if name != "ablation_cam":
            assert rel(auto.values, ak.explain(model, images, name, target=0, layer="stage", reshape=manual).values) \
                < 1e-6
    # the automatic layer: the last channels-last map before pooling is the final norm
    a = ak.explain(model, images, "grad_cam", target=0)
    assert a.layer == "norm" and "channels-last" in a.info["layer_choice"]


def test_unreadable_token_layer_is_refused(images):
    class NoPatch(nn.Module):          # tokens from an unfold + Linear: no conv patch embedding, no config
        def __init__(self):
            super().__init__()
            self.embed, self.mix, self.head = nn.Linear(48, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            t = nn.functional.unfold(x, 4, stride=4).transpose(1, 2)
            return self.head(self.mix(self.embed(t)).mean(1))
    with pytest.raises(ValueError, match="reshape="):
        ak.explain(NoPatch(), images, "grad_cam", target=0, layer="mix")
    a = ak.explain(NoPatch(), images, "grad_cam", target=0, layer="mix", reshape={"grid": (4, 4)})
    assert a.values.shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="reshape= must be"):
        ak.explain(NoPatch(), images, "grad_cam", target=0, layer="mix", reshape="rows")
    with pytest.raises(ValueError, match="cannot be inverted"):
        ak.explain(TinyViT(), images, "ablation_cam", target=0, layer="blocks.0", reshape=lambda t: t[:, 1:].
                   reshape(3, 4, 4, -1).permute(0, 3, 1, 2))


def test_layer_on_attention_module_returning_a_tuple(images):
    """nn.MultiheadAttention returns (output, weights): layer= taps the output; gradients there are right."""
    model = TinyViT(pool="mean")
    a = ak.explain(model, images, "saliency", target=0, layer="blocks.1.attn")
    assert a.values.shape == (3, 17, 16)
    out = {}
    h = model.blocks[1].attn.register_forward_hook(lambda m, i, o: out.update(o=o[0]))
    y = model(images)[:, 0].sum()
    h.remove()
    assert rel(a.values, torch.autograd.grad(y, out["o"])[0]) < 1e-5
    cam = ak.explain(model, images, "grad_cam", target=0, layer="blocks.1.attn")
    assert cam.values.shape == (3, 1, 4, 4)


# ------------------------------------------------------------------------------ the automatic layer
def test_automatic_layer_on_real_architectures(images):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cases = [(ResNetLike(), x, "layer4"), (DenseLike(), x, "features.norm5"),
             (TinyViT(pool="mean"), images, "blocks.1"),
             (TinyViT(pool="cls"), images, "blocks.0"),          # the last block's patch tokens reach nothing
             (SwinLike(), images, "norm")]
    for model, inp, want in cases:
        a = ak.explain(model, inp, "grad_cam", target=0, relu=False)
        assert a.layer == want, (type(model).__name__, a.layer, a.info["layer_choice"])
        assert a.info["layer_choice"].startswith(repr(want))
        assert a.values.abs().sum() > 0, type(model).__name__
    cls = ak.explain(TinyViT(pool="cls"), images, "grad_cam", target=0)
    assert "'blocks.1'" in cls.info["layer_choice"] and "zero gradient" in cls.info["layer_choice"]


def test_automatic_layer_on_attrkit_nets():
    from attrkit.models import SmallCNN, VGG
    cnn = SmallCNN(in_size=32)
    assert ak.explain(cnn, torch.rand(2, 3, 32, 32), "grad_cam", target=0).layer == cnn.last_relu
    vgg = VGG("vgg11", num_classes=3, in_size=64, width=0.125, fc_width=16)
    a = ak.explain(vgg, torch.rand(2, 3, 64, 64), "grad_cam", target=0)
    assert a.layer == vgg.last_relu                  # the rectified maps of the last conv (before the max-pool)
    series = nn.Sequential(nn.Conv1d(2, 4, 3, stride=3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                           nn.Linear(4, 2))
    with pytest.warns(UserWarning, match="only 3 cells"):       # doubtful: a very coarse map
        a = ak.explain(series, torch.rand(2, 2, 9), "grad_cam", target=0)
    assert a.layer == "1" and "doubtful" in a.info["layer_choice"]


def test_hugging_face_vit_and_text_transformer_token_layers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    vit, px = transformers.ViTForImageClassification(cfg).eval(), torch.rand(2, 3, 16, 16)
    a = ak.explain(vit, px, "grad_cam", target=("logits", 1), relu=False)
    blocks = [n for n, _ in vit.named_modules() if n.endswith("layer.0") or n.endswith("layers.0")]
    assert a.layer == blocks[0] and a.values.shape == (2, 1, 4, 4) and a.values.abs().sum() > 0
    manual = lambda t: t[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
    given = ak.explain(vit, px, "grad_cam", target=("logits", 1), relu=False, layer=a.layer, reshape=manual)
    assert rel(a.values, given.values) < 1e-6
    from attrkit import zoo
    from attrkit.data import text_evidence
    tt, data = zoo.pretrained("text_transformer", progress=False), text_evidence(n=4, seed=1)
    t = ak.explain(tt, data.x, "grad_cam", target=1, forward_kwargs={"attention_mask": data.attention_mask})
    assert t.layer == "encoder.layers.0" and t.values.shape == (4, 1, data.x.shape[1])
    assert "token position" in t.info["layer_grid"]


# ------------------------------------------------------------------------------ layer games on patch tokens
def test_patch_token_shapley_after_block_k(images):
    """Players = 2 x 2 blocks of patch tokens after block 0 (class/register tokens kept); the game runs only the
    part after the block; values equal exact Shapley values computed by hand with absent tokens set to zero."""
    import itertools
    from math import factorial
    model = TinyViT(registers=1)
    x, t = images[:2], torch.tensor([1, 2])
    a = ak.explain(model, x, "shapley", target=t, layer="blocks.0", players="grid:2", masker="zeros")
    assert a.info["head_only"] and a.info["token_grid"]["prefix"] == 2 and a.info["token_grid"]["grid"] == (4, 4)
    acts = {}
    h = model.blocks[0].register_forward_hook(lambda m, i, o: acts.update(a=o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    block = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]).flatten()

    def v(s, keep):
        act = acts["a"][s:s + 1].clone()
        for p in range(4):
            if p not in keep:
                act[:, 2:][:, block == p] = 0
        with torch.no_grad():
            return float(model.head(model.norm(model.blocks[1](act))[:, 0])[0, t[s]])
    for s in range(2):
        phi = []
        for p in range(4):
            others = [q for q in range(4) if q != p]
            total = 0.0
            for r in range(4):
                for c in itertools.combinations(others, r):
                    w = factorial(r) * factorial(3 - r) / factorial(4)
                    total += w * (v(s, set(c) | {p}) - v(s, set(c)))
            phi.append(total)
        got = a.info["player_values"][s, :4]
        assert rel(got, torch.tensor(phi)) < 1e-5
    assert a.heatmap().shape == (2, 16, 16)
    # default players at a token layer: one per patch token; the map is drawn on the patch grid
    fa = ak.explain(model, x, "feature_ablation", target=t, layer="blocks.0")
    assert fa.info["token_grid"]["grid"] == (4, 4) and int(fa.info["n_players"][0]) == 16
    assert fa.values[:, :2].abs().max() == 0                    # class/register tokens are no players


def test_layer_split_with_a_default_forward_argument(images):
    """timm's ViT passes attn_mask=None on to every block: the split head reads a non-tensor constant."""
    class WithMask(TinyViT):
        def forward(self, x, attn_mask=None):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
            t = self.blocks[1](maybe_scale(self.blocks[0](t), attn_mask))
            return self.head(self.norm(t)[:, 0])
    model = WithMask()
    a = ak.explain(model, images, "feature_ablation", target=0, layer="blocks.0")
    b = ak.explain(model, images, "feature_ablation", target=0, layer="blocks.0", head_only=False)
    assert a.info["head_only"] and rel(a.values, b.values) < 1e-6


def test_gradient_values_at_a_token_layer_draw_on_the_patch_grid(images):
    model = TinyViT(registers=1, pool="mean")
    a = ak.explain(model, images, "input_x_gradient", target=0, layer="blocks.0")
    assert a.values.shape == (3, 18, 16) and a.info["token_grid"]["prefix"] == 2
    per_token = a.values[:, 2:].sum(-1).reshape(3, 1, 4, 4)
    want = torch.nn.functional.interpolate(per_token, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert rel(a.heatmap(), want) < 1e-6
