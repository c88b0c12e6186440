"""AttnLRP against ``lxt`` on a small Hugging Face ViT and BERT (random weights from a config, nothing downloaded).

lxt 2.1 (the AttnLRP authors' package on PyPI) patches Hugging Face BERT with its own copy of
``modeling_bert`` written for transformers 4.52 (its README: "tested with transformers==4.52.4"); it does not import
beside transformers 5, which attrkit's Hugging Face support is written for. So the check runs in two processes:

1. ``--lxt-side FILE`` (an environment with transformers 4.52.4 and lxt 2.1, ``make crosscheck-hf`` builds
   ``.venv-crosscheck-hf``): builds both models, perturbs every parameter (Hugging Face initialises biases to zero
   and LayerNorms to the identity, which would hide the rules' treatment of them), computes lxt's relevance and
   saves configs, weights, inputs, logits and relevance.
   - BERT (``BertForSequenceClassification``, eager attention): ``lxt.efficient.monkey_patch(modeling_bert)``,
     lxt's own AttnLRP map (its BERT copy: uniform rule on ``q k^T`` and ``A v``, identity rule on GELU and the
     pooler's tanh, LayerNorm with its std held constant); relevance = word embedding x gradient, as lxt's examples.
   - ViT (``ViTForImageClassification``, eager attention): lxt has no Hugging Face ViT map, so lxt's generic
     patches are put on it the way its maps for other Hugging Face models do: ``patch_attention(modeling_vit)``
     (q, k gradient / 4, v / 2 at the attention function = the uniform rule), ``layer_norm_forward`` on
     ``nn.LayerNorm``, ``non_linear_forward`` (identity rule) on ``GELUActivation``; relevance = pixels x gradient.
     Also CP-LRP (``patch_cp_attention``: q and k gradients stopped) against ``attn_lrp(softmax="constant")``.
2. ``--lxt FILE`` (attrkit's environment, transformers 5): rebuilds the models from the saved configs and weights,
   checks the logits agree, runs ``ak.explain(..., "attn_lrp")`` and compares (max |difference| / max |lxt|).

Both sides run in float64 (Hugging Face's eager attention takes its softmax in float32: logits agree to ~1e-8),
so that and lxt's 1e-10 stabiliser in the identity rule are the only differences left.

    .venv-crosscheck-hf/bin/python crosscheck/attnlrp_hf.py --lxt-side .cache/attnlrp_hf_lxt.pt
    .venv-crosscheck/bin/python crosscheck/attnlrp_hf.py --lxt .cache/attnlrp_hf_lxt.pt [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

TOL = 1e-4


def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _configs(transformers):
    vit = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    bert = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=16, num_labels=3, pad_token_id=0,
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    for c in (vit, bert):
        c._attn_implementation = "eager"
    return vit, bert


def _inputs():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ids = torch.randint(3, 40, (3, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0                                         # one padded sentence
    ids[1, 6:] = 0
    return x, torch.tensor([1, 2]), ids, mask, torch.tensor([0, 2, 1])


def lxt_side(path: str) -> None:
    import transformers
    from transformers.activations import GELUActivation
    from transformers.models.bert import modeling_bert
    from transformers.models.vit import modeling_vit
    from lxt.efficient import monkey_patch
    from lxt.efficient.patches import (layer_norm_forward, non_linear_forward, patch_attention, patch_cp_attention,
                                       patch_method)

    vcfg, bcfg = _configs(transformers)
    x, vt, ids, mask, bt = _inputs()
    torch.manual_seed(0)
    vit = _perturb(transformers.ViTForImageClassification(vcfg), 10).double().eval()
    torch.manual_seed(0)
    bert_state = _perturb(transformers.BertForSequenceClassification(bcfg), 11).double().eval().state_dict()

    def pixel_relevance():
        xg = x.clone().requires_grad_(True)
        y = vit(pixel_values=xg).logits
        y.gather(1, vt[:, None]).sum().backward()
        return y.detach(), (xg * xg.grad).detach()

    patch_method(layer_norm_forward, torch.nn.LayerNorm)   # lxt's patches, class- and module-wide
    patch_method(non_linear_forward, GELUActivation, keep_original=True)
    eager, functions = modeling_vit.eager_attention_forward, dict(modeling_vit.ALL_ATTENTION_FUNCTIONS)
    patch_cp_attention(modeling_vit)                       # CP-LRP: q and k gradients stopped
    _, vit_cp = pixel_relevance()
    modeling_vit.eager_attention_forward = eager           # (patch_cp_attention edits the shared dict in place)
    modeling_vit.ALL_ATTENTION_FUNCTIONS.update(functions)
    patch_attention(modeling_vit)                          # AttnLRP: q, k gradients / 4, v / 2
    vy, vit_rel = pixel_relevance()

    monkey_patch(modeling_bert)                            # lxt's AttnLRP map for BERT (its modeling_bert copy)
    bert = modeling_bert.BertForSequenceClassification(bcfg).double().eval()
    bert.load_state_dict(bert_state)
    emb = bert.get_input_embeddings()(ids).detach().requires_grad_(True)
    by = bert(inputs_embeds=emb, attention_mask=mask).logits
    by.gather(1, bt[:, None]).sum().backward()
    bert_rel = (emb * emb.grad).detach()
    torch.save({"versions": {"transformers": transformers.__version__, "torch": torch.__version__},
                "vit": {"config": vcfg.to_dict(), "state": vit.state_dict(), "logits": vy.detach(),
                        "relevance": vit_rel, "relevance_cp": vit_cp},
                "bert": {"config": bcfg.to_dict(), "state": bert_state, "logits": by.detach(),
                         "relevance": bert_rel}}, path)
    print(f"lxt side written to {path} (transformers {transformers.__version__})")


_VIT_KEYS = ((r"encoder\.layer\.(\d+)\.attention\.attention\.query", r"layers.\1.attention.q_proj"),
             (r"encoder\.layer\.(\d+)\.attention\.attention\.key", r"layers.\1.attention.k_proj"),
             (r"encoder\.layer\.(\d+)\.attention\.attention\.value", r"layers.\1.attention.v_proj"),
             (r"encoder\.layer\.(\d+)\.attention\.output\.dense", r"layers.\1.attention.o_proj"),
             (r"encoder\.layer\.(\d+)\.intermediate\.dense", r"layers.\1.mlp.fc1"),
             (r"encoder\.layer\.(\d+)\.output\.dense", r"layers.\1.mlp.fc2"),
             (r"encoder\.layer\.(\d+)\.", r"layers.\1."))


def _load(model, state: dict) -> None:
    """Load a transformers-4 state dict; ViT's keys were renamed in transformers 5 (same tensors)."""
    import re
    own = model.state_dict()
    if set(state) != set(own):
        renamed = {}
        for k, v in state.items():
            for pat, rep in _VIT_KEYS:
                k2 = re.sub(pat, rep, k)
                if k2 != k:
                    k = k2
                    break
            renamed[k] = v
        state = renamed
    model.load_state_dict(state)


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def attrkit_side(path: str) -> list[dict]:
    import transformers
    import attrkit as ak

    saved = torch.load(path, weights_only=False)
    x, vt, ids, mask, bt = _inputs()
    rows = []
    for key, cls, inputs, target in (("vit", transformers.ViTForImageClassification, x, vt),
                                     ("bert", transformers.BertForSequenceClassification, ids, bt)):
        s = saved[key]
        cfg = getattr(transformers, "ViTConfig" if key == "vit" else "BertConfig").from_dict(s["config"])
        model = cls(cfg).double().eval()
        _load(model, s["state"])
        kw = {} if key == "vit" else {"forward_kwargs": {"attention_mask": mask}}
        with torch.no_grad():
            logits = model(inputs, **({} if key == "vit" else {"attention_mask": mask})).logits
        pick = ("logits", target)
        a = ak.explain(model, inputs, "attn_lrp", target=pick, **kw)
        ours = a.values if key == "vit" else a.info["embedding_values"]
        d = rel(ours, s["relevance"])
        plain = ak.explain(model, inputs, "input_x_gradient", target=pick, **kw)
        plain_v = plain.values if key == "vit" else plain.info["embedding_values"]
        if "relevance_cp" in s:
            cp = ak.explain(model, inputs, "attn_lrp", target=pick, softmax="constant", **kw).values
            dcp = rel(cp, s["relevance_cp"])
            rows.append({"model": f"Hugging Face {cls.__name__} (2 layers, d=16, random weights, perturbed)",
                         "rule": "CP-LRP (lxt: generic HF CP patches)", "rel": dcp,
                         "logits_rel": rel(logits, s["logits"]),
                         "plain_gradient_x_input_rel": rel(plain_v, s["relevance_cp"]),
                         "lxt_transformers": saved["versions"]["transformers"],
                         "attrkit_transformers": transformers.__version__,
                         "ok": dcp <= TOL and rel(plain_v, s["relevance_cp"]) > 1e-2})
        rows.append({"model": f"Hugging Face {cls.__name__} (2 layers, d=16, random weights, perturbed)",
                     "rule": "AttnLRP (lxt: " + ("its BERT map" if key == "bert" else "generic HF patches") + ")",
                     "rel": d, "logits_rel": rel(logits, s["logits"]),
                     "plain_gradient_x_input_rel": rel(plain_v, s["relevance"]),
                     "lxt_transformers": saved["versions"]["transformers"],
                     "attrkit_transformers": transformers.__version__,
                     "ok": d <= TOL and rel(logits, s["logits"]) < 1e-6 and rel(plain_v, s["relevance"]) > 1e-2})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--lxt-side", metavar="FILE", help="compute lxt's relevance (transformers 4.52 + lxt)")
    side.add_argument("--lxt", metavar="FILE", help="compare attrkit with the saved lxt relevance")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.lxt_side:
        lxt_side(args.lxt_side)
        return 0
    rows = attrkit_side(args.lxt)
    for r in rows:
        print(f"{r['model']:78s} {r['rule']:36.36s} rel diff {r['rel']:.2e} (logits {r['logits_rel']:.1e}, "
              f"plain x*grad "
              f"{r['plain_gradient_x_input_rel']:.2f}) {'ok' if r['ok'] else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
