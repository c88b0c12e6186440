"""W11: Integrated Gradients at the embedding of a text model, against Captum's LayerIntegratedGradients.

W11a: the zoo's ``text_transformer`` (embedding + transformer encoder) on 64 held-out ``text_evidence``
sentences of 16 token ids, 50 Gauss-Legendre steps from the all-pad reference, the predicted class. attrkit finds
the ``nn.Embedding`` itself (``ak.explain(model, ids)``); Captum is given ``model.embedding``. The check compares
the per-dimension values (attrkit's ``info["embedding_values"]``, Captum's output) before any timing.
"""
from __future__ import annotations

import torch

from ..case import Case, Impl, agree, ratio_target
from .common import default_chunk, explain, have

STEPS = 50
N_SENTENCES = 64
TOL = 1e-4


def _values(out) -> torch.Tensor:
    """Per-dimension values ``[N, L, D]``: attrkit keeps them in ``info`` (its ``values`` are per token)."""
    if hasattr(out, "info") and "embedding_values" in getattr(out, "info", {}):
        return out.info["embedding_values"]
    return torch.as_tensor(out[0] if isinstance(out, (tuple, list)) else out)


def _captum(model, ids, ref, target, internal_batch_size=None):
    def make():
        from captum.attr import LayerIntegratedGradients
        lig = LayerIntegratedGradients(model, model.embedding)
        return lambda: lig.attribute(ids, baselines=ref, target=target, n_steps=STEPS, method="gausslegendre",
                                     internal_batch_size=internal_batch_size)
    return make


def cases(cfg) -> list[Case]:
    from attrkit import zoo
    model = zoo.pretrained("text_transformer").eval()
    data = zoo.dataset("text_transformer")
    ids = data.x[:N_SENTENCES].contiguous()
    pad = int(data.meta["pad_id"])
    ref = torch.full_like(ids, pad)
    with torch.no_grad():
        target = model(ids).argmax(1)
    chunk = default_chunk(model, ids)
    impls = [Impl("attrkit", "attrkit", lambda: explain(model, ids, "integrated_gradients", target, steps=STEPS,
                                                        rule="gauss_legendre", baseline="pad", pad_id=pad),
                  {"steps": STEPS, "rule": "gauss_legendre", "baseline": f"pad (id {pad})",
                   "layer": "found: embedding", "batch_size": f"default ({chunk})"}, primary=True)]
    notes = [f"{N_SENTENCES} sentences x {ids.shape[1]} tokens, embedding dim {model.embedding.embedding_dim}"]
    targets = []
    if have("captum"):
        impls.append(Impl("captum", "captum", _captum(model, ids, ref, target),
                          {"n_steps": STEPS, "method": "gausslegendre", "layer": "embedding",
                           "internal_batch_size": None}))
        if not cfg.quick:
            impls.append(Impl("captum", f"captum ibs={chunk}", _captum(model, ids, ref, target, chunk),
                              {"n_steps": STEPS, "method": "gausslegendre", "internal_batch_size": chunk}))
        targets = [ratio_target("IG at the embedding: time ratio attrkit/Captum LayerIG <= 0.8", "attrkit",
                                "captum", 0.8)]
    else:
        notes.append("captum is not installed: no peer row")
    return [Case("W11a", "W11", "IG 50 steps at the embedding, text_transformer, 64 x 16 token ids", model, impls,
                 check=agree("captum" if have("captum") else "attrkit", TOL, _values), targets=targets,
                 notes=notes)]
