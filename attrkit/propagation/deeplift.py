"""DeepLIFT with the rescale rule (Shrikumar et al. 2017) on the gradient engine.

Attribution ``(x - r) * m`` where the multiplier ``m`` is the gradient with every nonlinearity's local
derivative replaced by the secant ``(f(z) - f(z_r)) / (z - z_r)`` (the plain derivative where
``|z - z_r| < 1e-10``) at every call of an elementwise activation (modules, reused modules, functions); linear
layers, BatchNorm, pooling and additions keep their gradient. Max pooling uses the rule Captum uses: the output
difference is routed to the max positions of the input and of the reference, divided by the input difference.
Products of two input-dependent tensors (squeeze-excitation gates), LayerNorm and a (log)softmax get exact
multipliers (below). Summation to delta, ``sum attr = f(x) - f(r)``, then holds exactly; the gap is reported in
``info``. Each chunk first runs the references through the model to record the reference values at each call
(once, broadcast, when every row has the same reference: Captum runs it once per row).
``deeplift_shap`` averages DeepLIFT over a background set (Lundberg & Lee 2017; Captum's ``DeepLiftShap``).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.adapter import ModelAdapter
from ..core.modules import LayerTap
from ..core.problem import Problem, Result
from ..core.references import make_reference
from ..registry import register
from .composites import Composite, run_rules
from .graph import _MODULE_KINDS, ACTIVATIONS
from .precision import with_precision_note, float32_problem
from .rules import Rule, layer_norm_affine, layer_norm_parts, surrogate

_EPS = 1e-10
_LINEAR_PIECES = ("relu", "relu6", "leaky_relu", "prelu", "hardtanh")   # their float32 secants are exact enough
_RULE_KINDS = ("max_pool", "mul", "layer_norm", "softmax", "log_softmax")
_NEEDS = ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus", "hardswish", "hardsigmoid",
          "mish", "max_pool1d", "max_pool2d", "max_pool3d")


class _References:
    """Reference inputs/outputs of each rule-carrying call site for the current chunk."""

    def __init__(self):
        self.recording = False
        self.shared = False          # the chunk's references are one row, recorded once, broadcast to the batch
        self.values: dict = {}

    def take(self, site, shape) -> tuple:
        if site not in self.values:
            raise ValueError(f"{site.name!r} ran for the input but not for the reference; DeepLIFT needs the same "
                             "operations to run for both (no data-dependent control flow)")
        ref = self.values.pop(site)
        got = ref[0][0].shape
        if got != shape and not (self.shared and got[0] == 1 and got[1:] == shape[1:]):
            raise ValueError(f"reference activation shape {tuple(got)} differs from {tuple(shape)} at "
                             f"{site.name!r}")
        return ref        # one row for a reference shared by the whole chunk: it broadcasts


class _ReferenceRule(Rule):
    """A rule that records the call's tensor inputs/output on the reference pass and, on the input pass, replaces
    the output by ``self.rescale(site, inputs, output, inputs_ref, output_ref)`` (same value, new gradient)."""
    needs_grad = False

    def __init__(self, refs: _References):
        self.refs = refs

    def forward(self, site, inputs, output, ctx):
        if self.refs.recording:
            self.refs.values[site] = (tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in inputs),
                                      output.detach())
            return None
        if not (torch.is_grad_enabled() and output.requires_grad):
            return None
        ins_ref, out_ref = self.refs.take(site, inputs[0].shape)
        return self.rescale(site, inputs, output, ins_ref, out_ref)


def _secant(dy, dz, fallback):
    small = dz.abs() < _EPS
    return torch.where(small, fallback, dy / torch.where(small, torch.ones_like(dz), dz))


def _difference(site, inputs, z, z_ref, y, y_ref):
    """``(f(z) - f(z_r), z - z_r)`` in float64 for lower precisions: in float32 the difference of two close
    outputs is mostly rounding, and the secant would carry it (DeepLIFT maps then changed with the batch size
    at 1e-3 on efficientnet_b0)."""
    fn = site.op if site.op is not None else site.module
    if z.dtype in (torch.float16, torch.bfloat16, torch.float32) and fn is not None and site.kind not in _LINEAR_PIECES:
        try:
            with torch.no_grad():
                zd, zrd = z.double(), z_ref.double()
                rest, kw = tuple(inputs[1:]), dict(site.kwargs)
                return fn(zd, *rest, **kw) - fn(zrd, *rest, **kw), zd - zrd
        except (RuntimeError, TypeError):     # parameters in another dtype (PReLU): stay in the model's dtype
            pass
    return y - y_ref, z - z_ref


class Rescale(_ReferenceRule):
    """Elementwise nonlinearity: multiplier ``(f(z) - f(z_r)) / (z - z_r)``."""
    name = "rescale"

    def rescale(self, site, inputs, output, ins_ref, y_ref):
        z, z_ref = inputs[0], ins_ref[0]
        dy, dz = _difference(site, inputs, z.detach(), z_ref, output.detach(), y_ref)
        small = dz.abs() < _EPS
        if site.kind == "relu":        # the derivative is known: one multiplier, no surrogate graph (fewer passes);
            m = dy / dz                # where |dz| is tiny the quotient is discarded (fewer full-size temporaries)
            return _Multiply.apply(z, output.detach(), torch.where(small, z.detach() > 0, m))
        m = (dy / torch.where(small, torch.ones_like(dz), dz)).to(z.dtype)
        return surrogate(output, torch.where(small, output, z * m))


class _Multiply(torch.autograd.Function):
    """The value of ``out``; the gradient ``g * m`` flows to ``z``."""

    @staticmethod
    def forward(ctx, z, out, m):
        ctx.save_for_backward(m)
        return out

    @staticmethod
    def backward(ctx, g):
        (m,) = ctx.saved_tensors
        return g * m, None, None


class Product(_ReferenceRule):
    """``y = a * b`` (a squeeze-excitation gate): ``dy = da (b + b_r) / 2 + db (a + a_r) / 2`` exactly."""
    name = "product"

    def rescale(self, site, inputs, output, ins_ref, y_ref):
        a, b = inputs[0], inputs[1]
        a_r, b_r = ins_ref[0], ins_ref[1]
        return surrogate(output, a * ((b.detach() + b_r) / 2) + b * ((a.detach() + a_r) / 2))


def _min_norm(dv, d, dims):
    """The secant vector ``dv * d / |d|^2`` (zero where ``|d|`` is tiny): ``<it, d> = dv`` exactly."""
    n2 = (d * d).sum(dims, keepdim=True)
    small = n2 < _EPS * _EPS
    return torch.where(small, torch.zeros_like(d), dv * d / torch.where(small, torch.ones_like(n2), n2))


class NormRescale(_ReferenceRule):
    """LayerNorm ``y = w c / sigma(c) + b`` with ``c = x - mean(x)``, ``k = 1/sigma``: ``c k - c_r k_r =
    dc k + c_r (k - k_r)`` (or ``dc k_r + c (k - k_r)`` where ``k > k_r``: the smaller multiplier, so a reference
    with almost no variance, such as all zeros, does not blow the multipliers up), the change of ``k`` attributed
    along ``dc`` (minimum-norm secant). Summation to delta holds exactly."""
    name = "layer_norm_rescale"

    def rescale(self, site, inputs, output, ins_ref, y_ref):
        x, dims, w, b, eps = layer_norm_parts(site, inputs)
        x_r = ins_ref[0]
        c = x - x.mean(dims, keepdim=True)
        c_r = x_r - x_r.mean(dims, keepdim=True)
        k = torch.rsqrt(x.detach().var(dims, unbiased=False, keepdim=True) + eps)
        k_r = torch.rsqrt(x_r.var(dims, unbiased=False, keepdim=True) + eps)
        dc = c.detach() - c_r
        u = _min_norm(k - k_r, dc, dims)
        mine = k <= k_r
        y = c * torch.where(mine, k, k_r) + torch.where(mine, c_r, c.detach()) * (u * c).sum(dims, keepdim=True)
        return surrogate(output, layer_norm_affine(y, w, b))


class SoftmaxRescale(_ReferenceRule):
    """(Log)softmax along ``dim``: ``log_softmax(z) = z - lse(z)`` with the change of ``lse`` attributed along the
    averaged softmax ``(p + p_r)/2``, scaled so ``<g, dz> = lse(z) - lse(z_r)`` (minimum-norm secant where that
    is degenerate); softmax then multiplies by the secant of ``exp``. Summation to delta holds exactly."""
    name = "softmax_rescale"

    def rescale(self, site, inputs, output, ins_ref, y_ref):
        z, z_r = inputs[0], ins_ref[0]
        dim = site.arg(inputs, 1, "dim")
        if dim is None:
            dim = -1
        zd = z.detach()
        lse, lse_r = torch.logsumexp(zd, dim, keepdim=True), torch.logsumexp(z_r, dim, keepdim=True)
        dz, dl = zd - z_r, lse - lse_r
        g = (torch.softmax(zd, dim) + torch.softmax(z_r, dim)) / 2
        gdz = (g * dz).sum(dim, keepdim=True)
        ok = gdz.abs() > 1e-6 * dl.abs().clamp_min(_EPS)
        g = torch.where(ok, g * dl / torch.where(ok, gdz, torch.ones_like(gdz)), _min_norm(dl, dz, dim))
        ls = z - (g * z).sum(dim, keepdim=True)
        if site.kind == "log_softmax":
            return surrogate(output, ls)
        ls_d, ls_r = zd - lse, z_r - lse_r
        m = _secant(output.detach() - y_ref, ls_d - ls_r, output.detach())
        return surrogate(output, ls * m)


def _pool_args(site, inputs):
    get = lambda i, name, d: site.arg(inputs, i, name, d)
    k = get(1, "kernel_size", None)
    stride = get(2, "stride", None)
    return k, (k if stride in (None, [], ()) else stride), get(3, "padding", 0), get(4, "dilation", 1), \
        bool(get(5, "ceil_mode", False))


class MaxPoolRescale(_ReferenceRule):
    """Max pooling: ``max(o, o_r) - o_r`` routed to the input's max positions and ``o - max(o, o_r)`` to the
    reference's, each divided by ``z - z_r`` there (plain gradient where ``|z - z_r| < 1e-10``)."""
    name = "maxpool_rescale"

    def _indices(self, site, inputs, z):
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[z.dim() - 2]
        k, stride, pad, dil, ceil = _pool_args(site, inputs)
        _, idx = pool(z, k, stride, pad, dil, ceil, return_indices=True)
        return idx

    def rescale(self, site, inputs, output, ins_ref, o_ref):
        z, z_ref = inputs[0], ins_ref[0]
        o = output.detach()
        top = torch.maximum(o, o_ref)
        dz = (z.detach() - z_ref).flatten(2)
        flat = z.flatten(2)
        g = 0
        for idx, delta, fallback in ((self._indices(site, inputs, z.detach()), top - o_ref, 1.0),
                                     (self._indices(site, inputs, z_ref), o - top, 0.0)):
            idx = idx.flatten(2).expand(o.shape[0], -1, -1)     # (a shared reference: one row)
            d_at = dz.gather(2, idx).view_as(o)
            small = d_at.abs() < _EPS
            coef = torch.where(small, torch.full_like(o, fallback), delta / torch.where(small, torch.ones_like(o), d_at))
            g = g + flat.gather(2, idx).view_as(o) * coef
        return surrogate(output, g)


def deeplift_rules(refs: _References) -> Callable:
    """assign(binding): the rescale rule on every elementwise nonlinearity call, and the rules above on max
    pools, products of two input-dependent tensors, LayerNorm and (log)softmax calls."""
    by_kind = {"max_pool": MaxPoolRescale(refs), "mul": Product(refs), "layer_norm": NormRescale(refs),
               "softmax": SoftmaxRescale(refs), "log_softmax": SoftmaxRescale(refs)}
    rescale = Rescale(refs)

    def assign(binding):
        return {s: (rescale if s.kind in ACTIVATIONS else by_kind[s.kind]) for s in binding.order
                if s.kind in ACTIVATIONS or s.kind in by_kind}
    return assign


def deeplift_values(problem: Problem, ref: torch.Tensor) -> tuple[torch.Tensor, dict, int]:
    """``(values, {"rules", "binding"}, n_evals, f(ref))`` for references ``ref`` (one row per input row)."""
    refs = _References()
    x = problem.inputs
    comp = Composite(problem.model, deeplift_rules(refs), example=x[:1], needs=_NEEDS,
                     unique=tuple(t for t, k in _MODULE_KINDS if k in ACTIVATIONS or k in _RULE_KINDS),
                     method="deeplift", layer=problem.layer)

    f_ref = torch.zeros(problem.n, dtype=torch.float64)
    # the same reference for every row (a constant, "zeros"): run it once per chunk, not once per row
    per_row_args = isinstance(problem.model, ModelAdapter) and problem.model.per_sample_args
    refs.shared = ref.shape[0] > 1 and not per_row_args and bool((ref == ref[:1]).all())
    n_ref = [0]
    at_layer = problem.layer is not None
    acts, ref_acts = ([], []) if at_layer else (None, None)   # the layer's activations, from the same passes

    def record(rows, run):                   # run: the problem whose model carries the rules
        refs.values.clear()
        refs.recording = True
        some = rows[:1] if refs.shared else rows
        try:
            with torch.no_grad(), LayerTap(problem.layer, problem.layer_name or "layer") if at_layer else nullcontext() as tap:
                out = run.forward(ref[some], some)   # also gives f(r): the rules leave forward values alone
                out = out.expand((len(rows),) + tuple(out.shape[1:])) if refs.shared else out
                f_ref[rows] = problem.target(out, rows).detach().double().cpu()
                if at_layer:
                    ref_acts.append(tap.output.expand((len(rows),) + tuple(tap.output.shape[1:])))
            n_ref[0] += len(some)
        finally:
            refs.recording = False

    grad, n, bound = run_rules(problem, comp, before=record, desc="deeplift", activations=acts)
    info = {"rules": bound["rules"], "binding": bound["binding"]}
    refs.values.clear()
    delta_in = torch.cat(acts) - torch.cat(ref_acts) if at_layer else x - ref
    return grad * delta_in, info, n + n_ref[0], f_ref


@register("deeplift", family="propagation", baseline=True, error="completeness_gap",
          summary="DeepLIFT rescale rule: (x - r) * multipliers; summation-to-delta gap reported",
          reference="Shrikumar, Greenside & Kundaje 2017")
def deeplift(problem: Problem, baseline="zeros") -> Result:
    """DeepLIFT (rescale) attributions relative to ``baseline`` ("zeros", a number, "mean", "blur", a tensor)."""
    problem, precision = float32_problem(problem, "deeplift")
    x = problem.inputs
    ref = make_reference(baseline, x, seed=problem.seed)
    values, info, n, f_r = deeplift_values(problem, ref)
    rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, rows).detach()
    f_r = f_r.to(f_x.device, f_x.dtype)
    total = values.reshape(problem.n, -1).sum(1)
    gap = (total - (f_x - f_r)).abs()
    info.update({"n_evals": n, "completeness_gap": gap, "f_x": f_x, "f_baseline": f_r})
    return with_precision_note(Result(values, info, baseline=ref), precision)


@register("deeplift_shap", family="propagation", baseline=True, error="completeness_gap",
          summary="DeepLIFT averaged over a background set (DeepSHAP); gap to f(x) - mean f(background) reported",
          reference="Lundberg & Lee 2017; Shrikumar et al. 2017")
def deeplift_shap(problem: Problem, baseline="zeros") -> Result:
    """``mean_b DeepLIFT(x, r_b)`` over the background rows ``r_b`` (``baseline`` given as ``[M, ...]``; a name,
    number or per-sample tensor gives plain DeepLIFT). Summation: ``sum attr = f(x) - mean_b f(r_b)``."""
    from ..gradients.methods import _background
    problem, precision = float32_problem(problem, "deeplift_shap")
    bg, shared = _background(problem, baseline)
    n, m = problem.n, (bg.shape[0] if shared else 1)
    rows = torch.arange(n).repeat_interleave(m)
    refs = bg.repeat((n,) + (1,) * (bg.dim() - 1)) if shared else bg
    wide = problem.with_inputs(problem.inputs[rows], problem.target.subset(rows), rows)
    wide = replace(wide, outputs=problem.outputs[rows] if problem.outputs is not None else None)
    values, info, n_ev, f_r = deeplift_values(wide, refs)
    values = values.reshape((n, m) + tuple(values.shape[1:])).mean(1)
    f_x = problem.target(problem.outputs, torch.arange(n)).detach()
    f_r = f_r.to(f_x.device, f_x.dtype).reshape(n, m).mean(1)
    total = values.reshape(n, -1).sum(1)
    info.update({"n_evals": n_ev, "completeness_gap": (total - (f_x - f_r)).abs(), "f_x": f_x,
                 "f_baseline": f_r, "n_background": m})
    return with_precision_note(Result(values, info, baseline=bg), precision)
