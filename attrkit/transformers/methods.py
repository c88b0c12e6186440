"""Attention-based attributions of transformers (registry family ``"attention"``).

With ``A_l`` the attention weights ``[N, heads, T, T]`` of self-attention call ``l`` (in call order, read by
:class:`~attrkit.transformers.capture.Capture`) and ``I`` the identity:

- **attention rollout** (Abnar & Zuidema 2020): heads fused (``head_fusion`` = mean | max | min),
  ``Â_l = (fuse(A_l) + I)`` with rows renormalised to 1 (the residual connection; ``residual=False``:
  ``fuse(A_l)`` as it is), ``R = Â_L ... Â_2 Â_1``;
- **gradient-weighted attention relevance** (Chefer, Gur & Wolf 2021, "Generic attention-model explainability",
  eqs. 5-6): ``R = I``; per layer ``Ā_l = mean_h (dy/dA_l ⊙ A_l)^+`` and ``R <- R + Ā_l R``;
- **attention probe**: the weights of one attention module (``layer=``), per head.

The relevance of the tokens is the row of the query that carries the prediction: the class token (row 0) for
vision transformers with prefix tokens and for Hugging Face text models (``[CLS]``), otherwise the mean over the
real (unpadded) rows; ``query=`` overrides ("cls", "mean" or a position). Image inputs give maps
``[N, 1, h, w]`` on the patch grid (prefix tokens dropped, see :mod:`attrkit.core.token_grid`); token-id inputs
``[N, L]`` give one score per token.
"""
from __future__ import annotations

import torch

from ..core.auto_layer import LayerChoice
from ..core.modules import require_hooks
from ..core.problem import Problem, Result
from ..core.token_grid import read_grid
from ..registry import register
from .capture import Capture, _hf_configs, attention_sites

FUSIONS = ("mean", "max", "min")


def run_attention(problem: Problem, rows: torch.Tensor, gradients: bool, mode=None):
    """``(weights, grads)`` for samples ``rows``: lists over attention calls of ``[B, H, T, S]`` tensors."""
    x = problem.inputs
    require_hooks(_user_model(problem), "attention methods")
    with Capture(_user_model(problem), mode) as cap, (torch.enable_grad() if gradients else torch.no_grad()):
        out = problem.forward(x[rows.to(x.device)], rows)
        if not cap.records:
            raise ValueError("no attention weights over tokens were seen in the forward pass: attention methods "
                             "read nn.MultiheadAttention (also inside nn.TransformerEncoderLayer), Hugging Face and "
                             "timm attention modules; for a model without attention use a gradient, CAM or game "
                             "method")
        names = [n for n, _ in cap.records]
        weights = [a for _, a in cap.records]
        grads = None
        if gradients:
            score = problem.target(out, rows)
            grads = torch.autograd.grad(score.sum(), weights, allow_unused=True)
            grads = [torch.zeros_like(a) if g is None else g for a, g in zip(weights, grads)]
    return names, [a.detach() for a in weights], grads


def _user_model(problem: Problem):
    m = problem.model
    return m.model if type(m).__name__ == "ModelAdapter" else m


def _self_attention(weights) -> None:
    for a in weights:
        if a.shape[-1] != a.shape[-2]:
            raise ValueError(f"rollout and relevance need self-attention ([.., T, T] weights); got {tuple(a.shape)} "
                             "(cross-attention)")


def fuse(a: torch.Tensor, how: str) -> torch.Tensor:
    if how not in FUSIONS:
        raise ValueError(f"head_fusion must be one of {FUSIONS}, got {how!r}")
    return {"mean": lambda t: t.mean(1), "max": lambda t: t.amax(1), "min": lambda t: t.amin(1)}[how](a)


def rollout_matrix(weights, head_fusion: str = "mean", residual: bool = True) -> torch.Tensor:
    """``Â_L ... Â_1`` ``[N, T, T]`` (float64) from per-layer weights ``[N, H, T, T]``."""
    r = None
    for a in weights:
        f = fuse(a.double(), head_fusion)
        if residual:
            f = f + torch.eye(f.shape[-1], dtype=f.dtype, device=f.device)
            f = f / f.sum(-1, keepdim=True)
        r = f if r is None else f @ r
    return r


def relevance_matrix(weights, grads) -> torch.Tensor:
    """Chefer et al. 2021: ``R = I``, ``R <- R + mean_h((dy/dA ⊙ A)^+) R`` per layer, ``[N, T, T]`` (float64)."""
    n, _, t, _ = weights[0].shape
    r = torch.eye(t, dtype=torch.float64, device=weights[0].device).expand(n, t, t).clone()
    for a, g in zip(weights, grads):
        cam = (g.double() * a.double()).clamp(min=0).mean(1)
        r = r + cam @ r
    return r


class TokenReadout:
    """Which row carries the prediction and how token scores become the method's values."""

    def __init__(self, problem: Problem, tokens: int, query=None):
        x = problem.inputs
        self.integer = not x.is_floating_point() and x.dtype != torch.bool
        self.view = None
        if not self.integer and x.dim() == 4 or problem.layout is not None:
            self.view = read_grid(problem.model, x, (x.shape[0], tokens, 1), input_layout=problem.layout)
        prefix = self.view.prefix if self.view is not None else 0
        hf = bool(_hf_configs(_user_model(problem)))
        if query is None:
            query = "cls" if prefix > 0 or (self.integer and hf) else "mean"
        if not (query in ("cls", "mean") or (isinstance(query, int) and 0 <= query < tokens)):
            raise ValueError(f"query must be 'cls', 'mean' or a token position in [0, {tokens}), got {query!r}")
        self.query = query

    def rows(self, r: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Token scores ``[N, T]`` from ``r [N, T, T]``; ``first``: the first layer's weights (padding = keys no
        query attends to)."""
        if self.query == "cls":
            return r[:, 0]
        if isinstance(self.query, int):
            return r[:, self.query]
        real = first.sum((1, 2)) > 0                       # [N, T]: keys that receive attention are real tokens
        w = real.to(r.dtype)
        return (r * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp(min=1)

    def values(self, scores: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` -> ``[N, 1, h, w]`` on the patch grid (images) or ``[N, T]`` (token ids)."""
        if self.view is None:
            return scores
        return self.view.maps(scores.unsqueeze(-1))

    def info(self) -> dict:
        out = {"query": self.query}
        if self.view is not None:
            out["layer_grid"] = self.view.describe()
        return out


def _matrix_method(problem: Problem, query, gradients: bool, build) -> Result:
    step = problem.chunk(grad=True)
    parts, rd, names = [], None, None
    for s in range(0, problem.n, step):
        rows = torch.arange(s, min(problem.n, s + step))
        names, weights, grads = run_attention(problem, rows, gradients)
        _self_attention(weights)
        if rd is None:
            rd = TokenReadout(problem, weights[0].shape[-1], query)
        parts.append(rd.rows(build(weights, grads), weights[0]))
    scores = torch.cat(parts)
    dtype = problem.outputs.dtype if problem.outputs is not None and problem.outputs.is_floating_point() \
        else torch.float32
    info = {"n_evals": problem.n, "attention_layers": names, **rd.info()}
    return Result(rd.values(scores).to(dtype), info)


@register("attention_rollout", family="attention", summary="product of head-fused attention matrices with the "
          "residual identity (class-agnostic)", layer="never", gradients=False, reference="Abnar & Zuidema 2020")
def attention_rollout(problem: Problem, head_fusion: str = "mean", residual: bool = True, query=None) -> Result:
    """Attention rollout; ``head_fusion`` mean | max | min; ``residual`` adds the identity (rows renormalised)."""
    fuse(torch.zeros(1, 1, 1, 1), head_fusion)
    res = _matrix_method(problem, query, False, lambda w, g: rollout_matrix(w, head_fusion, residual))
    res.info.update(class_agnostic=True, head_fusion=head_fusion, residual=bool(residual))
    return res


@register("attention_relevance", family="attention", summary="gradient-weighted attention relevance "
          "R += mean_h((dA ⊙ A)^+) R", layer="never", reference="Chefer, Gur & Wolf 2021")
def attention_relevance(problem: Problem, query=None) -> Result:
    """Generic attention-model explainability (Chefer et al. 2021): gradient-weighted attention, accumulated."""
    res = _matrix_method(problem, query, True, relevance_matrix)
    res.info["n_evals"] = 2 * problem.n
    return res


def default_attention_layer(model, x, forward=None, input_layout=None) -> LayerChoice:
    """The last attention module in ``named_modules()``."""
    require_hooks(model, "attention_probe")
    sites = attention_sites(model)
    if not sites:
        raise ValueError("attention_probe needs an attention module over tokens (nn.MultiheadAttention, a Hugging "
                         "Face or timm attention); the model has none attrkit recognises — pass layer=")
    name = sites[-1]
    return LayerChoice(name, model.get_submodule(name), f"{name!r}: the last attention module of the model")


@register("attention_probe", family="attention", summary="the attention weights of one attention module, per head",
          layer="required", gradients=False, reference="attention visualisation (Vaswani et al. 2017)",
          default_layer=default_attention_layer)
def attention_probe(problem: Problem, query=None) -> Result:
    """Weights of the attention module ``layer=`` (or the one attention module inside it): values are the
    query row per head (``[N, heads, h, w]`` images, ``[N, heads, T]`` token ids); ``info["attention"]`` holds
    the full weights ``[N, heads, T, S]``."""
    name = problem.layer_name
    model = _user_model(problem)
    require_hooks(model, "attention_probe")
    sites = [s for s in attention_sites(model) if s == name or s.startswith(name + ".")]
    if len(sites) != 1:
        raise ValueError(f"attention_probe: layer {name!r} holds {len(sites)} attention modules "
                         f"({', '.join(sites[:4]) or 'none'}); pass one attention module as layer=")
    site = sites[0]
    step = problem.chunk(grad=False)
    full, rd = [], None
    with torch.no_grad():
        for s in range(0, problem.n, step):
            rows = torch.arange(s, min(problem.n, s + step))
            names, weights, _ = run_attention(problem, rows, False)
            if site not in names:
                raise ValueError(f"attention_probe: layer {site!r} was not called in the forward pass")
            full.append(weights[names.index(site)])
    a = torch.cat(full)
    n, h, t, _ = a.shape
    rd = TokenReadout(problem, t, query)
    first = a.sum(1, keepdim=True)
    per_head = torch.stack([rd.rows(a[:, k], first.squeeze(1).unsqueeze(1)) for k in range(h)], 1)   # [N, H, S]
    if rd.view is not None:
        vals = torch.stack([rd.values(per_head[:, k]).squeeze(1) for k in range(h)], 1)
    else:
        vals = per_head
    return Result(vals, {"n_evals": problem.n, "attention": a, "attention_layer": site, "class_agnostic": True,
                         **rd.info()})
