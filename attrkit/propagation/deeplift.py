"""DeepLIFT with the rescale rule (Shrikumar et al. 2017) on the gradient engine.

Attribution ``(x - r) * m`` where the multiplier ``m`` is the gradient with every nonlinearity's local
derivative replaced by the secant ``(f(z) - f(z_r)) / (z - z_r)`` (the plain derivative where
``|z - z_r| < 1e-10``); linear layers keep their gradient. Max pooling uses the rule Captum uses: the output
difference is routed to the max positions of the input and of the reference, divided by the input difference.
Summation to delta, ``sum attr = f(x) - f(r)``, then holds exactly; the gap is reported in ``info``.
Each chunk first runs the references through the model to record the nonlinearities' reference values.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.problem import Problem, Result
from ..core.references import make_reference
from ..registry import register
from .composites import Composite, modified_gradient
from .rules import Rule, surrogate

_EPS = 1e-10
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_NEEDS = ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus",
          "max_pool1d", "max_pool2d", "max_pool3d")


class _References:
    """Reference inputs/outputs of each rule-carrying module for the current chunk."""

    def __init__(self):
        self.recording = False
        self.values: dict = {}

    def take(self, module, shape) -> tuple:
        if module not in self.values:
            raise ValueError("a nonlinearity ran for the input but not for the reference; DeepLIFT needs the "
                             "same modules to run for both (no data-dependent control flow)")
        ref = self.values.pop(module)
        if ref[0].shape != shape:
            raise ValueError(f"reference activation shape {tuple(ref[0].shape)} differs from {tuple(shape)}")
        return ref


class _ReferenceRule(Rule):
    """A rule that records the module's input/output on the reference pass and, on the input pass, replaces
    the output by ``self.rescale(module, z, output, z_ref, output_ref)`` (a surrogate with the same value)."""
    needs_grad = False

    def __init__(self, refs: _References):
        self.refs = refs

    def forward(self, module, inputs, output, ctx):
        z = inputs[0]
        if self.refs.recording:
            self.refs.values[module] = (z.detach(), output.detach())
            return None
        if not (torch.is_grad_enabled() and output.requires_grad):
            return None
        return self.rescale(module, z, output, *self.refs.take(module, z.shape))


class Rescale(_ReferenceRule):
    """Elementwise nonlinearity: multiplier ``(f(z) - f(z_r)) / (z - z_r)``."""
    name = "rescale"

    def rescale(self, module, z, output, z_ref, y_ref):
        dz = z.detach() - z_ref
        small = dz.abs() < _EPS
        m = (output.detach() - y_ref) / torch.where(small, torch.ones_like(dz), dz)
        return surrogate(output, torch.where(small, output, z * m))


class MaxPoolRescale(_ReferenceRule):
    """Max pooling: ``max(o, o_r) - o_r`` routed to the input's max positions and ``o - max(o, o_r)`` to the
    reference's, each divided by ``z - z_r`` there (plain gradient where ``|z - z_r| < 1e-10``)."""
    name = "maxpool_rescale"

    def _indices(self, module, z):
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[z.dim() - 2]
        _, idx = pool(z, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode,
                      return_indices=True)
        return idx

    def rescale(self, module, z, output, z_ref, o_ref):
        o = output.detach()
        top = torch.maximum(o, o_ref)
        dz = (z.detach() - z_ref).flatten(2)
        flat = z.flatten(2)
        g = 0
        for idx, delta, fallback in ((self._indices(module, z.detach()), top - o_ref, 1.0),
                                     (self._indices(module, z_ref), o - top, 0.0)):
            idx = idx.flatten(2)
            d_at = dz.gather(2, idx).view_as(o)
            small = d_at.abs() < _EPS
            coef = torch.where(small, torch.full_like(o, fallback), delta / torch.where(small, torch.ones_like(o), d_at))
            g = g + flat.gather(2, idx).view_as(o) * coef
        return surrogate(output, g)


@register("deeplift", family="propagation", baseline=True, error="completeness_gap",
          summary="DeepLIFT rescale rule: (x - r) * multipliers; summation-to-delta gap reported",
          reference="Shrikumar, Greenside & Kundaje 2017")
def deeplift(problem: Problem, baseline="zeros") -> Result:
    """DeepLIFT (rescale) attributions relative to ``baseline`` ("zeros", a number, "mean", "blur", a tensor)."""
    x = problem.inputs
    ref = make_reference(baseline, x, seed=problem.seed)
    refs = _References()
    rescale, maxpool = Rescale(refs), MaxPoolRescale(refs)

    def assign(trace):
        return {m: (maxpool if isinstance(m, MAXPOOLS) else rescale) for _, m in trace.order
                if isinstance(m, ACTIVATIONS + MAXPOOLS)}

    comp = Composite(problem.model, assign, example=x[:1], needs=_NEEDS, unique=ACTIVATIONS + MAXPOOLS,
                     method="deeplift")

    def record(rows):
        refs.values.clear()
        refs.recording = True
        try:
            with torch.no_grad():
                problem.forward(ref[rows], rows)
        finally:
            refs.recording = False

    at_layer = problem.layer is not None
    with comp:
        grad, n = modified_gradient(problem, comp, before=record, desc="deeplift")
        rules = comp.names()
    refs.values.clear()
    if at_layer:
        delta_in = problem.activation(x) - problem.activation(ref)
        n += 2 * problem.n
    else:
        delta_in = x - ref
    values = grad * delta_in
    rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, rows).detach()
    f_r = problem.evaluate(ref, rows)
    total = values.reshape(problem.n, -1).sum(1)
    gap = (total - (f_x - f_r)).abs()
    info = {"n_evals": n + 1 + 2 * problem.n, "rules": rules, "completeness_gap": gap,
            "f_x": f_x, "f_baseline": f_r}
    return Result(values, info, baseline=ref)
