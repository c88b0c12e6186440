"""AttnLRP (Achtibat et al. 2024, "AttnLRP: Attention-aware layer-wise relevance propagation for transformers").

Relevance is gradient x input under a modified backward pass (as the authors' ``lxt`` package computes it):

- **LayerNorm / RMSNorm** (identity-style rule): the normaliser is a constant, ``y = (x - mean) / stop(std) * w + b``;
- **elementwise activations** (GELU, SiLU, tanh, ...; identity rule, eq. 9): gradient ``f(x) / x``, so the
  relevance passes unchanged, ``R_in = R_out``;
- **bilinear products** ``q k^T`` and ``A v`` (uniform rule, eq. 7): half of the gradient to each factor;
- **softmax**: its own gradient, which in gradient x input form is the paper's rule
  ``R_i = x_i (R_i - s_i sum_j R_j)``; the softmax absorbs relevance like a bias.
  ``softmax="constant"`` instead treats the attention weights as constants (CP-LRP, Ali et al. 2022): relevance
  flows only through the values and is conserved on bias-free networks;
- linear layers and convolutions: the plain gradient (LRP-0 / epsilon -> 0); ReLU needs no rule.

``info["relevance_sum"]`` is ``sum R`` per sample, ``info["completeness_gap"]`` ``|sum R - f(x)|`` and
``info["relative_gap"]`` ``|sum R - f(x)| / |f(x)|`` per sample: biases, class tokens, positions (and, with the
paper's softmax rule, the softmax: the bias of its Taylor expansion) take the difference. ``budget=True`` counts
each of those (:mod:`.budget`): ``info["conservation_gap"]`` = ``|sum R + absorbed - f(x)| / |f(x)|``, measured
1e-7 on the zoo's ``shapes_vit`` where ``relative_gap`` is 0.41 (paper's softmax) / 0.19 (constant), median.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modules import require_hooks
from ..core.problem import Problem, Result
from ..gradients.methods import input_x_gradient
from ..registry import register
from .capture import Capture, _patch_forward

_ACTS = (nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardswish,
         nn.Hardsigmoid, nn.Hardtanh, nn.LeakyReLU, nn.Softsign)
SOFTMAX_RULES = ("attnlrp", "constant")


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out):
        ctx.save_for_backward(torch.where(x != 0, out / x, 0.0))     # (out / 0 is masked, not used)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, g):
        ratio, = ctx.saved_tensors
        return g * ratio, None


def identity_rule(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` in the forward pass; gradient ``out / x`` (0 where ``x == 0``) in the backward pass, to ``x``
    only (``out``'s own graph is cut)."""
    return _Identity.apply(x, out) if x.requires_grad else out.detach()


def _is_activation(m: nn.Module) -> bool:
    return isinstance(m, _ACTS) or (type(m).__module__.startswith("transformers.activations")
                                    and type(m).__name__ not in ("ReLUActivation", "ReLU"))


def _norm(m, x):
    """The norm with a constant normaliser (replaces the module's forward for the block)."""
    if isinstance(m, nn.LayerNorm):
        dims = (1,) if type(m).__name__.endswith("2d") else tuple(range(-len(m.normalized_shape), 0))
        mean = x.mean(dims, keepdim=True)
        std = ((x - mean).pow(2).mean(dims, keepdim=True) + m.eps).sqrt()
        y = (x - mean) / std.detach()
    else:                                                    # RMSNorm
        eps = m.eps if m.eps is not None else torch.finfo(x.dtype).eps
        dims = tuple(range(-len(m.normalized_shape), 0))
        y = x / (x.pow(2).mean(dims, keepdim=True) + eps).sqrt().detach()
    shape = (1, -1) + (1,) * (x.dim() - 2) if dims == (1,) else None
    if m.weight is not None:
        y = y * (m.weight.view(shape) if shape else m.weight)
    if getattr(m, "bias", None) is not None:
        y = y + (m.bias.view(shape) if shape else m.bias)
    return y


class _Activation(nn.Module):
    """A functional activation (``nn.TransformerEncoderLayer(activation="gelu")`` holds ``F.gelu``) as a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return identity_rule(x, self.fn(x))


@contextlib.contextmanager
def attnlrp_rules(model: nn.Module, softmax: str = "attnlrp"):
    """Install the rules above on ``model`` for the block (yields the :class:`Capture`); everything is removed on
    exit."""
    if softmax not in SOFTMAX_RULES:
        raise ValueError(f"softmax must be one of {SOFTMAX_RULES}, got {softmax!r}")
    undo = []
    norms = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
    try:
        for m in model.modules():
            if isinstance(m, norms):
                undo.append(_patch_forward(m, lambda x, m=m: _norm(m, x)))
            elif _is_activation(m):
                undo.append(m.register_forward_hook(lambda mod, args, out: identity_rule(args[0], out)).remove)
            elif isinstance(m, nn.TransformerEncoderLayer) and m.activation in (F.gelu,):
                old = m.activation
                m.activation = _Activation(old)        # registered as a child module for the call
                undo.append(lambda m=m, old=old: (m._modules.pop("activation", None),
                                                  m.__dict__.__setitem__("activation", old)))
        with Capture(model, softmax) as cap:
            yield cap
    finally:
        while undo:
            undo.pop()()


@register("attn_lrp", family="propagation", summary="AttnLRP: LRP for transformers (LayerNorm and activations "
          "identity, uniform rule on q k^T and A v, softmax rule)", reference="Achtibat et al. 2024",
          error="completeness_gap")
def attn_lrp(problem: Problem, softmax: str = "attnlrp", budget: bool = False) -> Result:
    """AttnLRP relevance (see the module docstring); ``softmax="constant"``: attention weights as constants;
    ``budget=True``: ``info["budget"]`` / ``info["conservation_gap"]`` from :func:`~.budget.relevance_budget`."""
    adapted = type(problem.model).__name__ == "ModelAdapter"
    model = problem.model.model if adapted else problem.model
    if not isinstance(model, nn.Module):
        raise TypeError("attn_lrp changes the backward pass of the model's layers; it needs a torch.nn.Module")
    require_hooks(model, "attn_lrp")
    if budget and (adapted or problem.layer is not None or not problem.inputs.is_floating_point()):
        raise ValueError("attn_lrp(budget=True) accounts relevance at a float input of a model called as model(x); "
                         "drop layer=, forward arguments and token ids, or call budget=False")
    problem.chunk(grad=True)               # the memory probe (one row) before the rules: no hooks on its pass
    with attnlrp_rules(model, softmax):
        res = input_x_gradient(problem)
    out = problem.target(problem.outputs, torch.arange(problem.n)).double().cpu()
    total = res.values.detach().double().flatten(1).sum(1).cpu()
    gap = ((total - out).abs() / out.abs().clamp_min(1e-12))
    res.info.update(relevance_sum=total, completeness_gap=(total - out).abs(), relative_gap=gap,
                    softmax_rule=softmax)
    if budget:
        from .budget import relevance_budget
        b = relevance_budget(model, problem.inputs, problem.target, softmax)
        res.info.update(budget=b, conservation_gap=b["gap"])
        res.info["n_evals"] = res.info.get("n_evals", problem.n) + problem.n
    return res
