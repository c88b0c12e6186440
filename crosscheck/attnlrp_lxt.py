"""AttnLRP against ``lxt`` (the AttnLRP authors' package), in the crosscheck environment.

1. torchvision ``VisionTransformer`` (small config, random weights) with lxt's own CP-LRP patch map for it
   (``lxt.efficient.models.vit_torch.cp_LRP``: GELU identity, LayerNorm std detached, q/k gradient stopped)
   against ``attn_lrp(softmax="constant")``.
2. A small pre-norm transformer classifier written with lxt's explicit relevance functions (``linear_epsilon``,
   ``layer_norm``, ``softmax`` (Proposition 3.1), ``matmul`` (uniform rule), ``add2``) and the same model as torch
   modules (``nn.MultiheadAttention``, ``nn.LayerNorm``, ``nn.GELU``) explained by ``attn_lrp(softmax="attnlrp")``.

lxt 2.1's ``lxt.efficient.models`` package imports its Hugging Face BERT copy, which does not import beside
transformers 5 (``find_pruneable_heads_and_indices`` is gone), so HF BERT/ViT cannot be patched by lxt here; the
package is stubbed so that lxt's rule functions and patches load, and lxt's vit_torch map is rebuilt from them.

    python crosscheck/attnlrp_lxt.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak

TOL = 1e-4
EPS = 1e-12           # lxt's stabilisers, made negligible: both sides run in float64
_stub = types.ModuleType("lxt.efficient.models")
_stub.get_default_map = lambda module: (_ for _ in ()).throw(ValueError("stubbed"))
sys.modules.setdefault("lxt.efficient.models", _stub)


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def torchvision_vit_row():
    from torchvision.models import vision_transformer as tvvit
    from lxt.efficient.patches import (cp_multi_head_attention_forward, layer_norm_forward, non_linear_forward,
                                       patch_method)
    torch.manual_seed(0)
    model = tvvit.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                    mlp_dim=32, num_classes=3).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)      # torchvision initialises the head to zero
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 2])
    ours = ak.explain(model, x, "attn_lrp", target=target, softmax="constant").values
    originals = {c: c.forward for c in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)}
    try:                                                   # lxt's cp_LRP map for torchvision's ViT
        patch_method(non_linear_forward, nn.GELU, keep_original=True)
        patch_method(layer_norm_forward, nn.LayerNorm)
        patch_method(cp_multi_head_attention_forward, nn.MultiheadAttention, keep_original=True)
        xg = x.clone().requires_grad_()
        y = model(xg)
        y.gather(1, target[:, None]).sum().backward()
        theirs = (xg * xg.grad).detach()
        plain = x.clone().requires_grad_()
    finally:
        for c, f in originals.items():
            c.forward = f
    y = model(plain)
    y.gather(1, target[:, None]).sum().backward()
    d, vs_plain = rel(ours, theirs), rel(plain * plain.grad, theirs)
    return {"model": "torchvision VisionTransformer (2 layers, d=16)", "rule": "CP-LRP (constant attention)",
            "rel": d, "ok": d <= TOL and vs_plain > 1e-2, "plain_gradient_x_input_rel": vs_plain}


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.act, self.fc2 = nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TextNet(nn.Module):
    """Embedding vectors in (float input [N, T, d]), two pre-norm blocks, final norm, mean pool, linear head."""

    def __init__(self, d=16, heads=2, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(Block(d, heads), Block(d, heads))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)
        for p in self.parameters():                         # non-trivial biases and LayerNorm affine maps
            p.data.add_(0.1 * torch.randn_like(p))
        self.eval()

    def forward(self, x):
        return self.head(self.norm(self.blocks(x)).mean(1))


class _Identity(torch.autograd.Function):
    """Explicit LRP identity rule for an elementwise nonlinearity: relevance passes unchanged."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, r):
        return r, None


def lxt_explicit(model: TextNet, x, target):
    """The same network with lxt's explicit relevance functions; returns the relevance at the input."""
    import lxt.explicit.functional as lf
    x = x.clone().requires_grad_()
    t = x
    for b in model.blocks:
        h = lf.layer_norm(t, b.norm1.weight, b.norm1.bias, b.norm1.eps)
        n, length, e = h.shape
        heads, d = b.attn.num_heads, e // b.attn.num_heads
        # the 1/sqrt(d) scaling folded into the query projection: in explicit LRP a plain torch op would scale
        # the relevance passing back through it
        fold = torch.ones(3 * e, 1)
        fold[:e] = 1 / math.sqrt(d)
        qkv = lf.linear_epsilon(h, b.attn.in_proj_weight * fold, b.attn.in_proj_bias * fold.flatten(), EPS)
        q, k, v = (z.reshape(n, length, heads, d).transpose(1, 2) for z in qkv.chunk(3, -1))
        a = lf.softmax(lf.matmul(q, k.transpose(-2, -1), epsilon=EPS), -1)
        ctx = lf.matmul(a, v, epsilon=EPS).transpose(1, 2).reshape(n, length, e)
        t = lf.add2(t, lf.linear_epsilon(ctx, b.attn.out_proj.weight, b.attn.out_proj.bias, EPS), epsilon=EPS)
        z = lf.linear_epsilon(lf.layer_norm(t, b.norm2.weight, b.norm2.bias, b.norm2.eps), b.fc1.weight, b.fc1.bias, EPS)
        t = lf.add2(t, lf.linear_epsilon(_Identity.apply(z, F.gelu), b.fc2.weight, b.fc2.bias, EPS), epsilon=EPS)
    pooled = lf.mean(lf.layer_norm(t, model.norm.weight, model.norm.bias, model.norm.eps), 1, False, EPS)
    y = lf.linear_epsilon(pooled, model.head.weight, model.head.bias, EPS)
    sel = torch.zeros_like(y).scatter_(1, target[:, None], 1.0)
    y.backward(sel * y.detach())                            # relevance at the output: the target logit
    return x.grad.detach(), y.detach()


def explicit_row():
    model = TextNet().double()
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([0, 2])
    theirs, y = lxt_explicit(model, x, target)
    assert rel(y, model(x)) < 1e-5, "the explicit copy computes another function"
    ours = ak.explain(model, x, "attn_lrp", target=target, softmax="attnlrp")
    d = rel(ours.values, theirs)
    return {"model": "2-block pre-norm transformer (nn.MultiheadAttention, LayerNorm, GELU)",
            "rule": "AttnLRP (softmax Prop. 3.1, uniform matmul)", "rel": d, "ok": d <= TOL,
            "relevance_sum": [float(v) for v in ours.info["relevance_sum"]],
            "target_logit": [float(v) for v in y.gather(1, target[:, None]).flatten()]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [torchvision_vit_row(), explicit_row()]
    for r in rows:
        print(f"{r['model']:72s} {r['rule']:44s} rel diff {r['rel']:.2e} {'ok' if r['ok'] else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
