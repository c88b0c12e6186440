"""Attention rollout, gradient-weighted attention relevance (Chefer et al. 2021) and attention probes: closed forms
on a two-block ViT, agreement with PyTorch's / Hugging Face's own attention weights, text models with padding."""
import math

import pytest
import torch
import torch.nn.functional as F

import attrkit as ak
from attrkit.transformers import Capture
from nets_transformer import TinyViT


def rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture
def vit():
    return TinyViT(depth=2, registers=1), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def torch_weights(model, x):
    """Per-head weights of each block from PyTorch's own nn.MultiheadAttention (need_weights=True)."""
    out = []
    hooks = [b.attn.register_forward_hook(lambda m, args, o: out.append(torch.nn.MultiheadAttention.forward(
        m, *args, need_weights=True, average_attn_weights=False)[1].detach())) for b in model.blocks]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def test_capture_keeps_the_function_and_reads_torchs_weights(vit):
    model, x = vit
    with torch.no_grad():
        y = model(x)
    with Capture(model) as cap, torch.no_grad():
        y2 = model(x)
    assert rel(y2, y) < 1e-6
    ref = torch_weights(model, x)
    assert [n for n, _ in cap.records] == ["blocks.0.attn", "blocks.1.attn"]
    for (_, a), b in zip(cap.records, ref):
        assert rel(a, b) < 1e-6


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_is_the_product_of_fused_matrices(vit, fusion):
    model, x = vit
    a1, a2 = torch_weights(model, x)
    f = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}[fusion]
    eye = torch.eye(a1.shape[-1], dtype=torch.float64)
    hat = lambda a: (f(a.double()) + eye) / (f(a.double()) + eye).sum(-1, keepdim=True)
    want = (hat(a2) @ hat(a1))[:, 0, 2:].reshape(3, 1, 4, 4)          # class-token row, 2 prefix tokens dropped
    got = ak.explain(model, x, "attention_rollout", head_fusion=fusion)
    assert got.values.shape == (3, 1, 4, 4) and rel(got.values, want) < 1e-6
    assert got.info["query"] == "cls" and got.info["class_agnostic"]
    plain = (f(a2.double()) @ f(a1.double()))[:, 0, 2:].reshape(3, 1, 4, 4)
    assert rel(ak.explain(model, x, "attention_rollout", head_fusion=fusion, residual=False).values, plain) < 1e-6


def manual_forward(model, x):
    """TinyViT written out with explicit attention matrices (retained for their gradients)."""
    t = model.patch(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls.expand(x.shape[0], -1, -1), t], 1) + model.pos
    mats = []
    for b in model.blocks:
        h = b.norm1(t)
        n, length, e = h.shape
        heads = b.attn.num_heads
        q, k, v = F.linear(h, b.attn.in_proj_weight, b.attn.in_proj_bias).chunk(3, -1)
        sp = lambda z: z.view(n, length, heads, e // heads).transpose(1, 2)
        a = torch.softmax(sp(q) @ sp(k).transpose(-2, -1) / math.sqrt(e // heads), -1)
        a.retain_grad()
        mats.append(a)
        t = t + b.attn.out_proj((a @ sp(v)).transpose(1, 2).reshape(n, length, e))
        t = t + b.fc2(b.act(b.fc1(b.norm2(t))))
    return model.head(model.norm(t)[:, 0]), mats


def test_relevance_equals_the_papers_equations(vit):
    """Chefer et al. 2021, eqs. 5-6: R = I; R += mean_h((grad A ⊙ A)^+) R; the class-token row over patches."""
    model, x = vit
    target = torch.tensor([0, 2, 1])
    y, mats = manual_forward(model, x)
    assert rel(y, model(x)) < 1e-6
    y.gather(1, target[:, None]).sum().backward()
    r = torch.eye(mats[0].shape[-1], dtype=torch.float64).expand(3, -1, -1)
    for a in mats:
        r = r + (a.grad.double() * a.detach().double()).clamp(min=0).mean(1) @ r
    want = r[:, 0, 2:].reshape(3, 1, 4, 4)
    got = ak.explain(model, x, "attention_relevance", target=target)
    assert rel(got.values, want) < 1e-5
    for b in (1, 2):                       # batch-size invariance
        assert rel(ak.explain(model, x, "attention_relevance", target=target, batch_size=b).values, want) < 1e-5


def test_probe_gives_each_heads_weights(vit):
    model, x = vit
    ref = torch_weights(model, x)[1]
    a = ak.explain(model, x, "attention_probe", layer="blocks.1.attn")
    assert a.values.shape == (3, 2, 4, 4)
    assert rel(a.values, ref[:, :, 0, 2:].reshape(3, 2, 4, 4)) < 1e-6
    assert rel(a.info["attention"], ref) < 1e-6
    auto = ak.explain(model, x, "attention_probe")
    assert auto.layer == "blocks.1.attn" and torch.equal(auto.values, a.values)
    with pytest.raises(ValueError, match="2 attention modules"):
        ak.explain(model, x, "attention_probe", layer="blocks")
    with pytest.raises(ValueError, match="head_fusion"):
        ak.explain(model, x, "attention_rollout", head_fusion="median")


def test_text_transformer_with_padding():
    """nn.TransformerEncoderLayer (fast path bypassed), padding masks kept: the function is unchanged, padded
    tokens get no rollout/relevance, scores are per token."""
    from attrkit import zoo
    from attrkit.data import text_evidence
    model, data = zoo.pretrained("text_transformer", progress=False), text_evidence(n=4, seed=2)
    ids, mask = data.x, data.attention_mask
    assert (mask == 0).any()
    with torch.no_grad():
        y = model(ids, mask)
    with Capture(model) as cap, torch.enable_grad():
        y2 = model(ids, mask)
    assert rel(y2, y) < 1e-6 and len(cap.records) == 1
    for name in ("attention_rollout", "attention_relevance"):
        a = ak.explain(model, ids, name, target=1, forward_kwargs={"attention_mask": mask})
        assert a.values.shape == ids.shape and a.info["query"] == "mean", name
        assert a.values[mask == 0].abs().max() == 0 and a.values[mask == 1].abs().sum() > 0, name


def test_hugging_face_vit_and_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    vit, px = transformers.ViTForImageClassification(cfg).eval(), torch.rand(2, 3, 16, 16)
    impl = vit.config._attn_implementation
    vit.config._attn_implementation = "eager"                    # transformers' own weights
    with torch.no_grad():
        att = vit(px, output_attentions=True).attentions
    vit.config._attn_implementation = impl
    eye = torch.eye(17, dtype=torch.float64)
    hat = lambda a: (a.double().mean(1) + eye) / 2
    want = (hat(att[1]) @ hat(att[0]))[:, 0, 1:].reshape(2, 1, 4, 4)
    got = ak.explain(vit, px, "attention_rollout", target=("logits", 0))
    assert rel(got.values, want) < 1e-6 and vit.config._attn_implementation == impl
    rel_map = ak.explain(vit, px, "attention_relevance", target=("logits", 2))
    assert rel_map.values.shape == (2, 1, 4, 4) and torch.isfinite(rel_map.values).all()
    probe = ak.explain(vit, px, "attention_probe", target=("logits", 0))
    assert rel(probe.info["attention"], att[1]) < 1e-6

    bcfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=16, num_labels=3, pad_token_id=0)
    bert = transformers.BertForSequenceClassification(bcfg).eval()
    ids = torch.randint(3, 40, (2, 8), generator=torch.Generator().manual_seed(1))
    ids[1, -3:] = 0
    m = (ids != 0).long()
    bert.config._attn_implementation = "eager"
    with torch.no_grad():
        batt = bert(ids, attention_mask=m, output_attentions=True).attentions
    bert.config._attn_implementation = "sdpa"
    eye = torch.eye(8, dtype=torch.float64)
    want = (((batt[1].double().mean(1) + eye) / 2) @ ((batt[0].double().mean(1) + eye) / 2))[:, 0]
    a = ak.explain(bert, ids, "attention_rollout", target=("logits", 1), forward_kwargs={"attention_mask": m})
    assert a.values.shape == ids.shape and a.info["query"] == "cls" and rel(a.values, want) < 1e-6
    assert a.values[1, -3:].abs().max() == 0
    r = ak.explain(bert, ids, "attention_relevance", target=("logits", 1), forward_kwargs={"attention_mask": m})
    assert r.values.shape == ids.shape and torch.isfinite(r.values).all()
