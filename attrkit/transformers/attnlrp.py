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
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..core.budget import rows_per_chunk
from ..core.modules import inputs_for, is_scripted, require_hooks
from ..core.problem import Problem, Result
from ..gradients.engine import non_finite_error
from ..gradients.methods import input_x_gradient
from ..registry import register
from .capture import Capture, _patch_forward

_ACTS = (nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardswish,
         nn.Hardsigmoid, nn.Hardtanh, nn.LeakyReLU, nn.Softsign)
SOFTMAX_RULES = ("attnlrp", "constant")
_CHUNKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()    # model -> {row shape...: rows per chunk}


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out):
        ratio = out / x                               # x == 0 (and an overflowing ratio): 0, not nan / inf
        ctx.save_for_backward(torch.nan_to_num_(ratio, nan=0.0, posinf=0.0, neginf=0.0))
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


class _LayerNormConstStd(torch.autograd.Function):
    """``layer_norm`` forward (the fused kernel); backward of ``(x - mean) / stop(std) * w + b``:
    ``dx = (gw - mean(gw)) / std`` with ``gw = g * w`` (the centring is linear, the std a constant)."""

    @staticmethod
    def forward(ctx, x, weight, bias, shape, eps):
        y, mean, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        ctx.save_for_backward(x, mean, rstd, weight)
        ctx.dims = tuple(range(-len(shape), 0))
        return y

    @staticmethod
    def backward(ctx, g):
        x, mean, rstd, weight = ctx.saved_tensors
        dims, lead = ctx.dims, tuple(range(g.dim() - len(ctx.dims)))
        gw = g * weight if weight is not None else g
        dx = (gw - gw.mean(dims, keepdim=True)) * rstd if ctx.needs_input_grad[0] else None
        dw = (g * (x - mean) * rstd).sum(lead) if weight is not None and ctx.needs_input_grad[1] else None
        db = g.sum(lead) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None


def _norm(m, x, param_grads: bool = False):
    """The norm with a constant normaliser (replaces the module's forward for the block); ``param_grads``: the
    affine parameters get gradients too (else they are constants of the pass, no work spent on them)."""
    if isinstance(m, nn.LayerNorm) and not type(m).__name__.endswith("2d") and x.requires_grad:
        w, b = (m.weight, m.bias) if param_grads else \
            (None if p is None else p.detach() for p in (m.weight, m.bias))
        return _LayerNormConstStd.apply(x, w, b, tuple(m.normalized_shape), m.eps)
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
def attnlrp_rules(model: nn.Module, softmax: str = "attnlrp", param_grads: bool = False):
    """Install the rules above on ``model`` for the block (yields the :class:`Capture`); everything is removed on
    exit. ``param_grads``: the norms' affine parameters get gradients (budget.py needs them)."""
    if softmax not in SOFTMAX_RULES:
        raise ValueError(f"softmax must be one of {SOFTMAX_RULES}, got {softmax!r}")
    undo = []
    norms = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
    try:
        for m in model.modules():
            if isinstance(m, norms):
                undo.append(_patch_forward(m, lambda x, m=m: _norm(m, x, param_grads)))
            elif _is_activation(m):
                undo.append(m.register_forward_hook(lambda mod, args, out: identity_rule(args[0], out)).remove)
            elif isinstance(m, nn.TransformerEncoderLayer) and m.activation in (F.gelu,):
                old = m.activation
                m.activation = _Activation(old)        # registered as a child module for the call
                undo.append(lambda m=m, old=old: (m._modules.pop("activation", None),
                                                  m.__dict__.__setitem__("activation", old)))
        with Capture(model, softmax) as cap:
            cap.keep_weights = False            # nothing reads them: fused attention (budget.py turns it back on)
            yield cap
    finally:
        while undo:
            undo.pop()()


class SharedPass:
    """``explain``'s own forward pass run under the rules and with gradients (``shared_pass`` below): its outputs
    are the ones ``attn_lrp`` differentiates, so the model runs once, not twice. A pre-hook on the model makes its
    input a fresh leaf (the user's tensor is never touched)."""

    def __init__(self, model: nn.Module, softmax: str, chunk: int):
        self.model, self.softmax, self.chunk = model, softmax, chunk
        self.leaves: list[torch.Tensor] = []
        self._stack = None

    def __enter__(self) -> "SharedPass":
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(torch.enable_grad())
            self._stack.enter_context(attnlrp_rules(self.model, self.softmax))
            self._stack.callback(self.model.register_forward_pre_hook(self._leaf).remove)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def _leaf(self, _m, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            leaf = args[0].detach().requires_grad_(True)
            self.leaves.append(leaf)
            return (leaf,) + tuple(args[1:])
        return None

    def usable(self, problem: Problem) -> bool:
        return len(self.leaves) == 1 and self.leaves[0].shape == problem.inputs.shape \
            and isinstance(problem.outputs, torch.Tensor) and problem.outputs.requires_grad


def shared_pass(model, x, layer, forward_args, forward_kwargs, batch_size, max_memory, options):
    """A :class:`SharedPass` when explain's pass can be the rules pass: a float input batch through an
    ``nn.Module`` alone (no layer, no forward arguments, not ``budget=True``) that fits one chunk of the memory
    budget (the one-row memory probe decides); else None and the method runs its own pass."""
    softmax = options.get("softmax", "attnlrp")
    if layer is not None or forward_args or forward_kwargs or options.get("budget") or softmax not in SOFTMAX_RULES \
            or not isinstance(model, nn.Module) or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    if is_scripted(model):
        return None                                         # attn_lrp refuses it with the way out
    try:
        xx = inputs_for(model, x)
        key = (tuple(xx.shape[1:]), xx.dtype, xx.device, batch_size, max_memory, len(model._modules))
        seen = _CHUNKS.setdefault(model, {})
        if key not in seen:              # the one-row memory probe, once per model and row shape
            seen[key] = rows_per_chunk(model, xx, batch_size, max_memory, grad=True)
        chunk = seen[key]
    except (TypeError, ValueError, RuntimeError):
        return None                                         # the normal path raises the error a user can act on
    return SharedPass(model, softmax, chunk) if xx.shape[0] <= chunk else None


def _from_shared(problem: Problem) -> Result:
    leaf = problem.shared.leaves[0]
    score = problem.target(problem.outputs, torch.arange(problem.n))
    (grad,) = torch.autograd.grad(score.sum(), leaf)
    values = grad * leaf.detach()
    bad = int((~torch.isfinite(values.flatten(1)).all(1) | ~torch.isfinite(score.detach())).sum())
    if bad:
        raise non_finite_error(bad, problem.n, "inputs")
    problem._chunk.setdefault(True, problem.shared.chunk)
    return Result(values, {"n_evals": 0})     # explain's one pass (it counts N) is the rules pass


@register("attn_lrp", family="propagation", summary="AttnLRP: LRP for transformers (LayerNorm and activations "
          "identity, uniform rule on q k^T and A v, softmax rule)", reference="Achtibat et al. 2024",
          error="completeness_gap", shared_pass=shared_pass)
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
    if isinstance(problem.shared, SharedPass) and problem.shared.usable(problem):
        res = _from_shared(problem)
    else:
        problem.chunk(grad=True)           # the memory probe (one row) before the rules: no hooks on its pass
        with attnlrp_rules(model, softmax):
            res = input_x_gradient(problem)
    out = problem.target(problem.outputs, torch.arange(problem.n)).detach().double().cpu()
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


