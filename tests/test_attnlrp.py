"""AttnLRP: the rules written out by hand on a two-block ViT, conservation on a bias-free ViT, HF models."""
import math

import pytest
import torch
import torch.nn.functional as F

import attrkit as ak
from nets_transformer import TinyViT


def rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def ln(x, m):                       # LayerNorm with the normaliser held constant
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / ((x - mu).pow(2).mean(-1, keepdim=True) + m.eps).sqrt().detach() * m.weight + m.bias


def half(t):                        # same value, half the gradient
    return 0.5 * t + 0.5 * t.detach()


def rules_forward(model, x, constant):
    """TinyViT with AttnLRP's rules spelled out: LN identity-style, GELU identity (gradient f(x)/x), uniform split
    of q k^T and A v, softmax's own gradient (or constant attention weights)."""
    t = model.patch(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls.expand(x.shape[0], -1, -1), t], 1) + model.pos
    for b in model.blocks:
        h = ln(t, b.norm1)
        n, length, e = h.shape
        d = e // b.attn.num_heads
        q, k, v = F.linear(h, b.attn.in_proj_weight, b.attn.in_proj_bias).chunk(3, -1)
        sp = lambda z: z.view(n, length, b.attn.num_heads, d).transpose(1, 2)
        if constant:
            a = torch.softmax(sp(q) @ sp(k).transpose(-2, -1) / math.sqrt(d), -1).detach()
            ctx = a @ sp(v)
        else:
            a = torch.softmax(half(sp(q) / math.sqrt(d)) @ half(sp(k).transpose(-2, -1)), -1)
            ctx = half(a) @ half(sp(v))
        t = t + b.attn.out_proj(ctx.transpose(1, 2).reshape(n, length, e))
        z = b.fc1(ln(t, b.norm2))
        g = F.gelu(z)
        g = g.detach() + (z - z.detach()) * (g / z).detach()
        t = t + b.fc2(g)
    return model.head(ln(t, model.norm)[:, 0])


@pytest.mark.parametrize("softmax", ["attnlrp", "constant"])
def test_attn_lrp_equals_the_rules_written_out(softmax):
    model = TinyViT(depth=2, registers=1)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)).requires_grad_()
    target = torch.tensor([2, 0, 1])
    y = rules_forward(model, x, softmax == "constant")
    assert rel(y, model(x)) < 1e-5
    (g,) = torch.autograd.grad(y.gather(1, target[:, None]).sum(), x)
    a = ak.explain(model, x.detach(), "attn_lrp", target=target, softmax=softmax)
    assert rel(a.values, g * x.detach()) < 1e-5
    assert a.info["softmax_rule"] == softmax and a.info["relevance_sum"].shape == (3,)
    plain = ak.explain(model, x.detach(), "input_x_gradient", target=target).values
    assert rel(a.values, plain) > 1e-2                 # the rules do change the backward pass


def test_conservation_on_a_bias_free_vit():
    """Bias-free (zero biases, zero class token and positions): with constant attention weights relevance is
    conserved at the pixels and at a block (measured 1.2e-6 and 1.8e-7); the paper's softmax rule absorbs some."""
    model = TinyViT(depth=2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or n in ("cls", "pos"):
                p.zero_()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for layer in (None, "blocks.0"):
        a = ak.explain(model, x, "attn_lrp", target=1, softmax="constant", layer=layer)
        assert float(a.info["relative_gap"].max()) < 1e-3, layer
    lrp = ak.explain(model, x, "lrp", target=1)                 # CNN rules on a transformer: far off
    lrp_gap = float((lrp.info["completeness_gap"] / lrp.info["f_x"].abs()).max())
    assert float(ak.explain(model, x, "attn_lrp", target=1, softmax="constant").info["relative_gap"].max()) \
        < 1e-3 * lrp_gap
    with pytest.raises(ValueError, match="softmax must be"):
        ak.explain(model, x, "attn_lrp", target=1, softmax="none")


def test_attn_lrp_on_hugging_face_models():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    vit, px = transformers.ViTForImageClassification(cfg).eval(), torch.rand(2, 3, 16, 16)
    a = ak.explain(vit, px, "attn_lrp", target=("logits", 1))
    assert a.values.shape == px.shape and torch.isfinite(a.values).all()
    assert vit.config._attn_implementation == "sdpa"           # restored
    bcfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=16, num_labels=3, pad_token_id=0)
    bert = transformers.BertForSequenceClassification(bcfg).eval()
    ids = torch.randint(3, 40, (2, 8), generator=torch.Generator().manual_seed(1))
    b = ak.explain(bert, ids, "attn_lrp", target=("logits", 1), forward_kwargs={"attention_mask": torch.ones_like(ids)})
    assert b.values.shape == ids.shape and b.layer == "bert.embeddings.word_embeddings"
    assert b.info["embedding_values"].shape == (2, 8, 16)


def test_attn_lrp_on_a_transformer_encoder_with_functional_gelu():
    """nn.TransformerEncoderLayer(activation="gelu") calls F.gelu: the rule is put on it for the call and taken off
    after; bias-free with constant attention weights, relevance is conserved through post-norm layers."""
    torch.manual_seed(0)

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True,
                                                     bias=False)
            self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = torch.nn.Linear(8, 3, bias=False)

        def forward(self, x):
            return self.head(self.enc(x).mean(1))
    model = Enc().eval()
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    a = ak.explain(model, x, "attn_lrp", target=1, softmax="constant")
    assert float(a.info["relative_gap"].max()) < 1e-3
    assert all(layer.activation is F.gelu for layer in model.enc.layers)
    plain = ak.explain(model, x, "input_x_gradient", target=1).values
    assert rel(a.values, plain) > 1e-2


def test_attn_lrp_runs_the_model_the_fewest_times(monkeypatch):
    """explain's own forward pass is the rules pass (shared_pass): ONE forward + backward under the rules, after a
    rows-1 memory probe (absent with batch_size=); under the rules the modules' own attention and norm maths never
    run. When the batch does not fit one chunk (batch_size=2 < 5 rows) explain's pass and the rules pass are
    separate (chunked), with the same values."""
    model = TinyViT(depth=2)
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rows, backwards, own = [], [], {"mha": 0, "ln": 0}

    def count(_m, args, out):
        rows.append(args[0].shape[0])
        if out.requires_grad:
            out.register_hook(lambda g: backwards.append(g.shape[0]))
    model.register_forward_hook(count)
    for cls, key in ((torch.nn.MultiheadAttention, "mha"), (torch.nn.LayerNorm, "ln")):
        orig = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, *a, orig=orig, key=key, **kw:
                            (own.__setitem__(key, own[key] + 1), orig(self, *a, **kw))[1])
    one = ak.explain(model, x, "attn_lrp", target=1, batch_size=8)
    assert rows == [5] and backwards == [5] and own == {"mha": 0, "ln": 0}
    assert one.info["n_evals"] == 5
    rows.clear(), backwards.clear()
    ak.explain(model, x, "attn_lrp", target=1)
    assert rows == [1, 5] and backwards == [5]
    assert own == {"mha": 2, "ln": 5}                 # the probe's row only: 2 blocks, 2 + 2 + 1 norms
    rows.clear(), backwards.clear()
    chunked = ak.explain(model, x, "attn_lrp", target=1, batch_size=2)
    assert rows == [2, 2, 1, 2, 2, 1] and backwards == [2, 2, 1]
    assert torch.allclose(chunked.values, one.values, atol=1e-6) and torch.equal(chunked.outputs.argmax(1),
                                                                                  one.outputs.argmax(1))


def test_conservation_budget_on_the_zoo_vit():
    """shapes_vit (biases everywhere, class token, positions, CNN stem): sum R at the pixels misses f(x) by 0.41
    (paper's softmax) / 0.19 (constant weights), median over 16 images; counted part by part, biases + norms +
    class token and positions + softmax close the budget to 4e-7 (max over those 16 images)."""
    from attrkit.zoo import pretrained
    from attrkit.data import shapes
    model = pretrained("shapes_vit", progress=False)
    x = shapes(n=8, seed=12345, progress=False).x[:4]
    target = model(x).argmax(1)
    for softmax in ("attnlrp", "constant"):
        a = ak.explain(model, x, "attn_lrp", target=target, softmax=softmax, budget=True)
        b = a.info["budget"]
        assert float(a.info["conservation_gap"].max()) < 1e-3 and float(a.info["relative_gap"].min()) > 0.01
        assert torch.allclose(b["input"], a.info["relevance_sum"], atol=1e-4, rtol=1e-4)
        head = model.head.bias.detach().double()[target]          # dF/d(head bias of the target) = 1
        assert torch.allclose(b["by_parameter"]["head.bias"], head, atol=1e-6)
        assert (b["softmax"].abs().max() > 1e-3) == (softmax == "attnlrp")
    with pytest.raises(ValueError, match="budget=True"):
        ak.explain(model, x, "attn_lrp", target=0, budget=True, layer="blocks.0")


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_a_failure_in_the_shared_pass_leaves_the_model_as_it_was(where):
    """explain's pass is the rules pass: a model failing in it (forward) or in the gradient (backward) lets the
    error through with every rule, hook and flag removed, and the next call works."""
    model = TinyViT(depth=2)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = ak.explain(model, x, "attn_lrp", target=1).values
    flags = [p.requires_grad for p in model.parameters()]

    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("boom in backward")

    def trip(_m, _a, out):
        if where == "forward":
            raise RuntimeError("boom in forward")
        return Boom.apply(out) if out.requires_grad else out
    h = model.blocks[1].register_forward_hook(trip)
    with pytest.raises((RuntimeError, ValueError), match="boom"):    # (explain's first-call message wraps it)
        ak.explain(model, x, "attn_lrp", target=1)
    h.remove()
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert not model._forward_pre_hooks and all(not m._forward_hooks for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags and torch.is_grad_enabled()
    assert torch.equal(ak.explain(model, x, "attn_lrp", target=1).values, ref)
