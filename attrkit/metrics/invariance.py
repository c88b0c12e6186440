"""Axioms that compare attributions of two models (thesis section 2.4; Sundararajan et al. 2017).

- :func:`linearity` (2.30): ``F_{f+g} = F_f + F_g`` (``f + g`` is :class:`SumModel`).
- :func:`implementation_invariance` (Sundararajan et al.): functionally equal networks get equal attributions
  (:func:`rescaled_copy` builds such a twin of a ReLU network).

Each check returns a :class:`MetricResult` with ``passed`` per sample and the violation size per sample
(``per_sample``); ``score`` is the largest violation in the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.modules import call_model, eval_mode
from ._common import MetricResult, check_inputs, explain_values, fixed_target, model_outputs, to_np
from .axioms import _check_tol, _flat, _tolerance

__all__ = ["linearity", "implementation_invariance", "SumModel", "rescaled_copy"]


# -------------------------------------------------------------------------------------- linearity
class SumModel(nn.Module):
    """``h(x) = f(x) + g(x)`` for two models with the same output shape (the linearity axiom's ``f + g``)."""

    def __init__(self, f, g):
        super().__init__()
        if not callable(f) or not callable(g):
            raise TypeError("SumModel needs two models (callables)")
        self.f, self.g = f, g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.f(x), self.g(x)
        if a.shape != b.shape:
            raise ValueError(f"f and g return shapes {tuple(a.shape)} and {tuple(b.shape)}; f + g needs equal shapes")
        return a + b


def linearity(f, g, x, method="integrated_gradients", target=None, *, atol: float = 1e-5, rtol: float = 1e-4,
              batch_size: int | None = None, **options) -> MetricResult:
    """Linearity (axiom 2.30): ``F_{f+g}(x) = F_f(x) + F_g(x)``, with ``f + g`` built by :class:`SumModel`.
    The target (None: the predicted class of ``f + g``) is the same output index for all three models.
    ``per_sample``: ``max |F_{f+g} - F_f - F_g|``; passes when ``<= atol + rtol * max |F_{f+g}|``."""
    _check_tol(atol, rtol)
    h = SumModel(f, g)
    x = check_inputs(h, x)
    fixed, _, _ = fixed_target(h, x, target, None, batch_size)
    kw = dict(options)
    if isinstance(method, str):
        kw.setdefault("batch_size", batch_size)
    vals = [_flat(explain_values(m, x, method, fixed, kw).detach().cpu().to(torch.float64)) for m in (f, g, h)]
    diff = (vals[2] - vals[0] - vals[1]).abs().amax(1)
    passed = _tolerance(diff, vals[2].abs().amax(1), atol, rtol)
    return MetricResult("linearity", float(diff.max()), to_np(diff), to_np(passed), {"atol": atol, "rtol": rtol})


# ------------------------------------------------------------------------- implementation invariance
def implementation_invariance(model_a, model_b, x, method="integrated_gradients", target=None, *,
                              atol: float = 1e-5, rtol: float = 1e-3, output_tol: float = 1e-4,
                              batch_size: int | None = None, **options) -> MetricResult:
    """Implementation invariance (Sundararajan et al. 2017): two networks that compute the same function
    (e.g. ``model_b = rescaled_copy(model_a)``) must get the same attributions.

    Raises ValueError when the outputs on ``x`` differ by more than ``output_tol`` (relative): the axiom
    says nothing then. ``per_sample``: ``max |F_a - F_b|``; passes when ``<= atol + rtol * max |F_a|``."""
    _check_tol(atol, rtol)
    x = check_inputs(model_a, x)
    oa, ob = model_outputs(model_a, x, batch_size), model_outputs(model_b, x.to(x.device), batch_size)
    if oa.shape != ob.shape:
        raise ValueError(f"the two models return shapes {tuple(oa.shape)} and {tuple(ob.shape)}")
    out_gap = float((oa - ob).abs().max())
    if out_gap > output_tol * max(1.0, float(oa.abs().max())):
        raise ValueError(f"the two models are not functionally equal on x (outputs differ by {out_gap:.3g}); "
                         "implementation invariance only concerns networks computing the same function")
    fixed, _, _ = fixed_target(model_a, x, target, None, batch_size)
    kw = dict(options)
    if isinstance(method, str):
        kw.setdefault("batch_size", batch_size)
    va = _flat(explain_values(model_a, x, method, fixed, kw).detach().cpu().to(torch.float64))
    vb = _flat(explain_values(model_b, x, method, fixed, kw).detach().cpu().to(torch.float64))
    diff = (va - vb).abs().amax(1)
    passed = _tolerance(diff, va.abs().amax(1), atol, rtol)
    return MetricResult("implementation_invariance", float(diff.max()), to_np(diff), to_np(passed),
                        {"output_gap": out_gap, "atol": atol, "rtol": rtol})


_HOMOGENEOUS = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d,
                nn.Flatten, nn.Dropout, nn.Identity, nn.LeakyReLU)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def rescaled_copy(model: nn.Module, x: torch.Tensor, *, low: float = 0.5, high: float = 2.0, seed: int = 0,
                  check_tol: float = 1e-4) -> nn.Module:
    """A functionally equal copy of a ReLU network: every hidden unit ``k`` of a Linear/Conv layer is scaled by
    ``c_k ~ U(low, high)`` and the next Linear/Conv layer's inputs from it by ``1 / c_k`` (ReLU and pooling
    are positively homogeneous). Needs the layers to run in the order found on the example batch ``x``, with
    only ReLU/pooling/flatten/dropout between them; the copy is checked to give the same outputs on ``x``
    (ValueError otherwise)."""
    if not isinstance(model, nn.Module):
        raise TypeError("rescaled_copy needs an nn.Module")
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got {low}, {high}")
    import copy
    x = check_inputs(model, x)
    twin = copy.deepcopy(model)
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, a, o: order.append(mod))
             for m in twin.modules() if len(list(m.children())) == 0]
    try:
        with torch.inference_mode(), eval_mode(twin, warn=False):
            ref_out = call_model(twin, x)
    finally:
        for h in hooks:
            h.remove()
    g = torch.Generator().manual_seed(int(seed))
    prev = None
    n_scaled = 0
    with torch.no_grad():
        for mod in order:
            if isinstance(mod, _AFFINE):
                if prev is not None:
                    k = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
                    c = low + (high - low) * torch.rand(k, generator=g, dtype=torch.float64)
                    c = c.to(prev.weight)
                    prev.weight.mul_(c.view(-1, *([1] * (prev.weight.dim() - 1))))
                    if prev.bias is not None:
                        prev.bias.mul_(c)
                    if isinstance(mod, nn.Linear):
                        if mod.in_features % k:
                            raise ValueError("cannot match a layer's inputs to the previous layer's units")
                        s = mod.in_features // k
                        mod.weight.div_(c.repeat_interleave(s).view(1, -1))
                    else:
                        if mod.in_channels != k or getattr(mod, "groups", 1) != 1:
                            raise ValueError("cannot rescale across a grouped convolution")
                        mod.weight.div_(c.view(1, -1, *([1] * (mod.weight.dim() - 2))))
                    n_scaled += 1
                prev = mod
            elif isinstance(mod, _HOMOGENEOUS):
                continue
            else:
                prev = None
    if n_scaled == 0:
        raise ValueError("found no pair of consecutive Linear/Conv layers separated only by ReLU/pooling to rescale")
    with torch.inference_mode(), eval_mode(twin, warn=False):
        out = call_model(twin, x)
    if float((out - ref_out).abs().max()) > check_tol * max(1.0, float(ref_out.abs().max())):
        raise ValueError("the rescaled copy does not compute the same function (the forward pass has operations "
                         "between layers that are not positively homogeneous)")
    return twin
