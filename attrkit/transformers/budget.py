"""Where AttnLRP's relevance goes: the conservation budget ``f(x) = sum R_input + sum R_absorbed``.

Under AttnLRP's rules (:mod:`attrkit.transformers.attnlrp`) every operation is linear in its input up to an additive
term, and relevance ``R = z * dF/dz`` (gradient x input, modified backward) passes each operation unchanged except
for what that additive term takes (LRP's "bias absorbs relevance"):

- an additive parameter or constant ``c`` (Linear / Conv / attention projection biases, LayerNorm and BatchNorm
  shifts, a class token, position and token-type embeddings) takes ``c * dF/dc``;
- the softmax under the paper's rule (Achtibat et al. 2024, Prop. 3.1: ``R_in = z (R_out - s sum R_out)``, the
  first-order Taylor expansion of ``s`` at its own input ``z``) takes ``sum R_out - sum R_in``, the share of the
  expansion's bias ``s(z) - J(z) z``; with constant attention weights (CP-LRP) it takes nothing;
- LayerNorm's ``eps`` takes nothing (the normaliser is a constant, the map is linear in ``x``); GELU / SiLU under
  the identity rule and the uniform rule on ``q k^T`` and ``A v`` take nothing; nor do ReLU and max-pooling.

:func:`relevance_budget` computes every part separately (one sample at a time, the gradient with respect to the
additive parameters and the softmax inputs and outputs), so ``sum R_input + biases + norms + constants + softmax
- f(x)`` is a measured conservation gap, not zero by construction. Models called as ``model(x)`` with softmax
attention seen by :class:`~attrkit.transformers.capture.Capture` (``nn.MultiheadAttention``, Hugging Face).
"""
from __future__ import annotations

import torch
from torch import nn

from .attnlrp import attnlrp_rules

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm")
                                                                          else ())
PARTS = ("biases", "norms", "constants", "softmax")


def additive_parameters(model: nn.Module) -> list[tuple[str, str, nn.Parameter]]:
    """``(part, name, p)`` for every parameter that enters the forward pass as a summand: biases of linear maps
    (part ``"biases"``), shifts of norms (``"norms"``) and parameters no known layer multiplies (class tokens,
    positions, embedding tables; ``"constants"``). Weights of Linear, Conv, norms and attention are left out."""
    owner, weights = {}, set()
    for m in model.modules():
        for n, p in m.named_parameters(recurse=False):
            owner.setdefault(id(p), m)
        if isinstance(m, (nn.Linear,) + _CONV + _NORMS):
            weights.add(id(m.weight))
        if isinstance(m, nn.MultiheadAttention):
            weights.update(id(w) for w in (m.in_proj_weight, m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
                           if w is not None)
    out = []
    for name, p in model.named_parameters():
        if id(p) in weights:
            continue
        m = owner[id(p)]
        part = "norms" if isinstance(m, _NORMS) else "biases" if name.endswith("bias") else "constants"
        out.append((part, name, p))
    return out


def _bn_shift(model: nn.Module) -> dict[int, torch.Tensor]:
    """BatchNorm in eval mode adds ``b - mean * w / sqrt(var + eps)``: that shift per bias parameter."""
    out = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None and m.running_mean is not None:
            w = m.weight if m.weight is not None else torch.ones_like(m.bias)
            out[id(m.bias)] = (m.bias - m.running_mean * w / (m.running_var + m.eps).sqrt()).detach()
    return out


def relevance_budget(model: nn.Module, x: torch.Tensor, target, softmax: str = "attnlrp") -> dict:
    """The budget of AttnLRP's relevance per sample (see the module docstring); ``target``: a class index, one per
    sample, or ``callable(output, rows) -> [B]``. Returns ``"f_x"``, ``"input"`` (``sum R`` at the input), the
    absorbed ``"biases"``, ``"norms"``, ``"constants"``, ``"softmax"``, ``"gap"`` =
    ``|input + absorbed - f(x)| / |f(x)|`` (all ``[N]`` float64) and ``"by_parameter"`` (name -> ``[N]``)."""
    if not isinstance(model, nn.Module) or not x.is_floating_point():
        raise TypeError("relevance_budget takes an nn.Module called as model(x) on a float input batch")
    if callable(target):
        score = target
    else:
        t = torch.as_tensor(target).reshape(-1).expand(len(x)) if torch.as_tensor(target).numel() == 1 \
            else torch.as_tensor(target)
        score = lambda out, rows: out[torch.arange(len(rows)), t[rows].to(out.device)]
    params = additive_parameters(model)
    shift = _bn_shift(model)
    n = len(x)
    res = {k: torch.zeros(n, dtype=torch.float64) for k in ("f_x", "input") + PARTS}
    by_param = {name: torch.zeros(n, dtype=torch.float64) for _, name, _ in params}
    was = [p.requires_grad for _, _, p in params]
    was_training = model.training
    model.eval()
    try:
        for _, _, p in params:
            p.requires_grad_(True)
        for i in range(n):
            xi = x[i:i + 1].detach().clone().requires_grad_(True)
            with attnlrp_rules(model, softmax, param_grads=True) as cap, torch.enable_grad():
                cap.logits, cap.keep_weights = [], True
                y = score(model(xi), torch.tensor([i])).sum()
                zs = cap.logits
                aw = [a for _, a in cap.records] if softmax == "attnlrp" else []
                grads = torch.autograd.grad(y, [xi] + [p for _, _, p in params] + zs + aw, allow_unused=True)
            g = iter(grads)
            res["f_x"][i] = float(y.detach())
            res["input"][i] = float((xi * next(g)).double().sum())
            for (part, name, p), gp in zip(params, g):
                if gp is None:
                    continue
                r = float((shift.get(id(p), p).double() * gp.double()).sum())
                by_param[name][i] = r
                res[part][i] += r
            gz = [next(g) for _ in zs]
            for z, a, gzi, ga in zip(zs, aw, gz, [next(g) for _ in aw]):
                if gzi is None or ga is None:
                    continue
                r_in = torch.where(torch.isfinite(z), z, 0.0).double() * gzi.double()   # masked keys: z = -inf
                res["softmax"][i] += float((a.double() * ga.double()).sum() - r_in.sum())
    finally:
        for (_, _, p), w in zip(params, was):
            p.requires_grad_(w)
        model.train(was_training)
    total = res["input"] + sum(res[k] for k in PARTS)
    res["gap"] = (total - res["f_x"]).abs() / res["f_x"].abs().clamp_min(1e-12)
    res["by_parameter"] = by_param
    return res
