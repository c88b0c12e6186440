"""W13: AttnLRP against one plain forward + backward pass of the same model on the same batch (issue 16).

W13a: the zoo's ``shapes_vit`` (hybrid ViT: SmallCNN stem, 2 blocks) on 16 held-out ``shapes`` images, the
predicted class. W13b: a small Hugging Face ``ViTForImageClassification`` (random weights, seeded; 2 layers,
width 64, 32x32 images, 4x4 patches) on 16 random images, when ``transformers`` is installed.

Rows: ``ak.explain(model, x, "attn_lrp")`` (whole call: explain's forward pass for outputs and targets, the
one-row memory probe, one forward + backward under the rules) and the plain ``x * d f_t / dx`` by
``torch.autograd.grad`` to the input only (no parameter gradients: the cheapest forward + backward). Each
timed run repeats the call ``CALLS`` times (one call is tens of milliseconds). Check (before timing): attrkit's
values equal gradient x input of a forward + backward pass under ``attnlrp_rules`` set up directly, to 1e-6
relative. Target: time ratio <= 1.5.
"""
from __future__ import annotations

import torch

from ..case import Case, Check, Impl, rel_error, ratio_target
from .common import attrkit_method, have

TOL = 1e-6
PLAIN = "forward+backward"


def _grad_x_input(model, x, target, rules: bool):
    from attrkit.transformers.attnlrp import attnlrp_rules
    xx = x.clone().requires_grad_(True)
    ctx = attnlrp_rules(model) if rules else torch.enable_grad()
    with ctx:
        out = model(xx)
        out = out.logits if hasattr(out, "logits") else out
        g, = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xx)
    return (g * x).detach()


def _case(cid, title, model, x, calls, notes) -> Case:
    import attrkit as ak
    with torch.no_grad():
        out = model(x)
        target = (out.logits if hasattr(out, "logits") else out).argmax(1)
    tgt = ("logits", target) if hasattr(out, "logits") else target

    def repeat(fn):
        def run():
            for _ in range(calls):
                res = fn()
            return res
        return lambda: run

    def check(outs):
        ref = _grad_x_input(model, x, target, rules=True)
        err = rel_error(outs["attrkit attn_lrp"].values, ref)
        return {"attrkit attn_lrp": Check(err <= TOL, err, TOL, "relative L2 difference to gradient x input under "
                                          "attnlrp_rules set up directly"),
                PLAIN: Check(True, 0.0, None, "reference: plain autograd, no rules")}

    impls = [Impl("attrkit", "attrkit attn_lrp", repeat(lambda: ak.explain(model, x, "attn_lrp", target=tgt,
                                                                            progress=False)),
                  {"softmax": "attnlrp", "calls per run": calls}, primary=True),
             Impl("torch", PLAIN, repeat(lambda: _grad_x_input(model, x, target, rules=False)),
                  {"calls per run": calls})]
    return Case(cid, "W13", title, model, impls, check=check, repeats=7, notes=notes,
                targets=[ratio_target("AttnLRP <= 1.5x one forward+backward of the model", "attrkit attn_lrp",
                                      PLAIN, 1.5)])


def cases(cfg) -> list[Case]:
    why = attrkit_method("attn_lrp")
    if why:
        from ..case import unavailable
        return [unavailable("W13", "W13", "AttnLRP vs one forward+backward", why)]
    from attrkit import zoo
    calls = 5 if cfg.quick else 10
    model = zoo.pretrained("shapes_vit").eval()
    x = zoo.dataset("shapes_vit").x[-16:].contiguous()
    out = [_case("W13a", "AttnLRP vs one forward+backward, shapes_vit, 16 held-out images 3x64x64", model, x,
                 calls, ["attrkit's call also runs explain's forward pass (outputs, targets) and a one-row memory "
                         "probe; the rules pass itself is one forward + backward (tests/test_attnlrp.py counts "
                         "them)"])]
    if have("transformers"):
        from transformers import ViTConfig, ViTForImageClassification
        cfgv = ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, num_labels=5)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            hf = ViTForImageClassification(cfgv).eval()
        xh = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        out.append(_case("W13b", "AttnLRP vs one forward+backward, HF ViT (2 layers, width 64), 16 x 3x32x32", hf,
                         xh, calls, ["random weights (seed 0): the cost, not the maps, is measured"]))
    else:
        out[0].notes.append("transformers is not installed: no Hugging Face case")
    return out
