"""The gradient-quadrature engine.

A method supplies a *plan*: for the pairs (sample i, point k) it returns points ``p_ik``, weights ``w_ik``
and optional multipliers ``m_ik``; the engine returns ``sum_k w_ik * grad f_target(p_ik) * m_ik`` per sample.
Points are generated chunk by chunk, so memory is bounded by the chunk size (``Problem.chunk``), never by
steps x batch x input. Gradients are taken at the input (``where="input"``), at a layer for input points
(``grad_at="layer"``), or at a layer whose activation is replaced by the points (``where="layer"``: paths in
activation space, as in layer Integrated Gradients).
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from ..progress import bar as progress_bar
from ..core.problem import Problem
from ..core.tokens import value_dtype

Plan = Callable[[torch.Tensor, torch.Tensor], tuple]
_NOT_DIFFERENTIABLE = re.compile(r"does not require grad|grad_fn|derivative for .* is not implemented|"
                                 r"not differentiable|not have been used in the graph")


def _no_grad_error(detail: str = "") -> ValueError:
    return ValueError("the target output does not depend differentiably on the input"
                      f"{detail}: gradient methods need a model built from differentiable torch operations "
                      "(no .detach(), argmax, .item() or numpy inside forward); use a perturbation method "
                      "such as method='kernel_shap' or 'occlusion' for non-differentiable models")


def gradient_sum(problem: Problem, samples: torch.Tensor, n_points: int, plan: Plan, value_shape: tuple | None,
                 where: str = "input", grad_at: str = "input", desc: str = "gradients",
                 scores: torch.Tensor | None = None, entries: bool = False,
                 activations: list | None = None, tap=None) -> tuple[torch.Tensor, int]:
    """Return ``(acc, n_evals)``: ``acc[j] = sum_k w * grad * m`` for entry ``j`` (sample ``samples[j]``).

    With ``entries=True`` the plan is called as ``plan(rows, ks, j)`` with the entry indices too. ``scores`` (a float64 tensor of
    ``len(samples) * n_points``) receives the target's value at every point, free with the gradients; ``activations``
    (a list, ``grad_at="layer"``) the layer's activation of each chunk, in order. ``value_shape=None``: the shape of
    the first chunk's gradient (no forward pass to find it). ``tap`` replaces ``problem.tap()`` for
    ``grad_at="layer"``; one with ``leaf = True`` (``stem.StemTap``) makes the layer's output a leaf, so the points
    themselves need no gradient."""
    if where not in ("input", "layer") or grad_at not in ("input", "layer"):
        raise ValueError("where/grad_at must be 'input' or 'layer'")
    x = problem.inputs
    if not x.is_floating_point() and where == "input" and grad_at == "input":
        raise ValueError(f"the input holds integer token ids / codes ({x.dtype}), which have no gradient; attribute "
                         "at the embedding (methods of the gradient and propagation families do that by default, "
                         "or pass layer=) or use a perturbation method")
    dtype = value_dtype(x, problem.outputs.dtype if problem.outputs is not None else None)   # token ids: float
    zeros = lambda shape: torch.zeros((len(samples),) + tuple(shape), device=x.device,
                                      dtype=torch.float64 if dtype == torch.float32 else dtype)
    acc = None if value_shape is None else zeros(value_shape)
    total = len(samples) * n_points
    step = problem.chunk(grad=True)
    use_tap = where == "layer" or grad_at == "layer"
    tap_ctx = (tap if tap is not None else problem.tap()) if use_tap else None
    points_grad = not getattr(tap_ctx, "leaf", False)
    bar = progress_bar(total, desc, problem.progress)
    bad = torch.zeros((), dtype=torch.long, device=x.device)      # points with a non-finite value or gradient
    found = None if scores is None else torch.empty(total, dtype=scores.dtype, device=x.device)   # one copy at the end
    try:
        if tap_ctx is not None:
            tap_ctx.__enter__()
        for start in range(0, total, step):
            flat = torch.arange(start, min(total, start + step), device=samples.device)
            local = torch.div(flat, n_points, rounding_mode="floor")
            ks = flat - local * n_points
            rows = samples[local]
            if tap_ctx is not None:
                tap_ctx.reset()   # a plan may run forward passes of its own (DeepLIFT's references)
            points, weights, mult = plan(rows, ks, local) if entries else plan(rows, ks)
            points = points.detach()
            if points.is_floating_point() and points_grad:          # (integer inputs: gradients at the layer only)
                points.requires_grad_(True)
            with torch.enable_grad():
                if where == "layer":
                    tap_ctx.reset()
                    tap_ctx.replace_with = points
                    out = problem.forward(x[rows.to(x.device)], rows)
                    wrt = points
                else:
                    if tap_ctx is not None:
                        tap_ctx.reset()
                    out = problem.forward(points, rows)
                    wrt = points if grad_at == "input" else tap_ctx.output
                score = problem.target(out, rows)
                if found is not None:
                    found[start:start + len(flat)] = score.detach().reshape(-1).to(found.dtype)
                if not score.requires_grad or wrt is None:
                    raise _no_grad_error()
                try:
                    (grad,) = torch.autograd.grad(score.sum(), wrt, allow_unused=True)
                except RuntimeError as e:    # autograd's "not differentiable" messages; the model's own errors pass
                    if not _NOT_DIFFERENTIABLE.search(str(e)):
                        raise
                    raise _no_grad_error(f" ({e})") from None
            if grad is None:
                raise _no_grad_error()
            if activations is not None and where == "input" and grad_at == "layer":
                activations.append(wrt.detach())
            if acc is None:
                acc = zeros(grad.shape[1:])
            flat_grad = grad.reshape(grad.shape[0], -1)
            bad_rows = ~torch.isfinite(score.detach())
            if flat_grad.shape[1]:
                low, high = torch.aminmax(flat_grad, dim=1)     # (NaN propagates): one pass, not isfinite's four
                bad_rows = bad_rows | ~torch.isfinite(low) | ~torch.isfinite(high)
            bad = bad + bad_rows.sum()
            w = weights.to(device=grad.device, dtype=grad.dtype)
            if mult is None:      # the chunk's entries are consecutive: one [entries, rows] @ [rows, D] product
                first = start // n_points
                span = (start + len(flat) - 1) // n_points - first + 1
                mix = torch.zeros(span, len(flat), dtype=grad.dtype, device=grad.device)
                mix[(local - first).to(grad.device), torch.arange(len(flat), device=grad.device)] = w
                acc[first:first + span] += (mix @ flat_grad).view((span,) + tuple(grad.shape[1:])).to(acc.dtype)
            else:
                contrib = grad * w.view((-1,) + (1,) * (grad.dim() - 1)) * mult
                acc.index_add_(0, local.to(acc.device), contrib.to(acc.dtype))
            bar.update(len(flat))
    finally:
        bar.close()
        if tap_ctx is not None:
            tap_ctx.__exit__(None, None, None)
    if found is not None:
        scores.copy_(found)
    if int(bad):
        raise non_finite_error(int(bad), total, "points where gradients were taken (path points between the baseline "
                               "and the input, noisy copies, or the input itself)")
    return acc.to(dtype), total


def non_finite_error(bad: int, total: int, where: str) -> ValueError:
    return ValueError(
        f"the model's target value or its gradient is not finite (NaN or inf) at {bad} of {total} {where}; the "
        "attributions would be NaN or meaningless. The model is undefined there (e.g. log or sqrt of a value <= 0): "
        "choose a baseline inside its domain (e.g. baseline='mean', 'blur' or a number where the model is finite), "
        "or make the model finite there (e.g. clamp before log)")
