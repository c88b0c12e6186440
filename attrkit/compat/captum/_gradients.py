"""Captum's gradient classes on attrkit's quadrature engine: Saliency, InputXGradient, IntegratedGradients,
GradientShap and NoiseTunnel."""
from __future__ import annotations

import numpy as np
import torch

from ...core.problem import Result
from ...gradients.engine import gradient_sum
from ._base import (Attribution, as_tuple, baselines_for, forward_args, formatted, path_delta, repeat_per_sample,
                    spec, sum_per_sample)

RULES = {"riemann_left": "riemann_left", "riemann_right": "riemann_right", "riemann_middle": "riemann_middle",
         "riemann_trapezoid": "riemann_trapezoid", "gausslegendre": "gauss_legendre"}


def rule_of(method: str) -> str:
    if method not in RULES:
        raise ValueError(f"unknown method {method!r}; Captum's integration methods are {', '.join(RULES)}")
    return RULES[method]


class Saliency(Attribution):
    """``|grad f_target(x)|`` (``abs=True``, Captum's default) or the signed gradient (Simonyan et al. 2014)."""

    def attribute(self, inputs, target=None, abs=True, additional_forward_args=None):
        return self._run(self.forward_func, inputs, "saliency", target=target,
                         additional_forward_args=additional_forward_args, abs=bool(abs))[1]


class InputXGradient(Attribution):
    """``x * grad f_target(x)`` (Shrikumar et al. 2016)."""

    def attribute(self, inputs, target=None, additional_forward_args=None):
        return self._run(self.forward_func, inputs, "input_x_gradient", target=target,
                         additional_forward_args=additional_forward_args)[1]


class IntegratedGradients(Attribution):
    """Integrated Gradients (Sundararajan et al. 2017): ``(x - r) * int_0^1 grad f(r + a (x - r)) da`` with
    ``n_steps`` points of ``method`` (``gausslegendre``, ``riemann_left/right/middle/trapezoid``).

    Equals Captum for every method but ``riemann_trapezoid``: Captum's trapezoid weights sum to
    ``(n_steps - 1) / n_steps`` (so even a linear model's IG comes out short by ``1 / n_steps``); attrkit uses the
    textbook trapezoid rule, whose weights sum to 1. ``internal_batch_size`` bounds the rows per model call.
    ``return_convergence_delta=True`` also returns ``sum(attr) - (f(x) - f(r))`` per sample.
    """

    def __init__(self, forward_func, multiply_by_inputs: bool = True):
        super().__init__(forward_func)
        if not multiply_by_inputs:
            raise ValueError("multiply_by_inputs=False (the path-integrated gradient without the (x - r) factor) "
                             "is not supported; divide the attributions by (x - baseline) where it is nonzero")
        self._multiply_by_inputs = True

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None, return_convergence_delta=False):
        xs, _ = as_tuple(inputs)
        a, values = self._run(self.forward_func, inputs, "integrated_gradients", target=target,
                              additional_forward_args=additional_forward_args, batch_size=internal_batch_size,
                              baseline=baselines_for(baselines, xs), steps=int(n_steps), rule=rule_of(method))
        return path_delta(a, values, return_convergence_delta)


def _pairs(problem, pair_refs, pair_noise, alphas, samples_per_input: int):
    """Gradient SHAP with given draws: row ``j = i * S + k`` of ``refs``/``noise``/``alphas`` is sample ``i``'s
    ``k``-th (reference, input noise, path position); returns ``mean_k grad f(a x~ + (1 - a) r) * (x~ - r)``."""
    x, s = problem.inputs, samples_per_input
    refs, noise = pair_refs.to(x.device, x.dtype), pair_noise.to(x.device, x.dtype)
    alphas = alphas.to(x.device, x.dtype)
    inv = torch.full((1,), 1.0 / s, dtype=torch.float64)

    def plan(rows, ks):
        j = rows.to(x.device) * s + ks.to(x.device)
        xi = x[rows] + noise[j]
        r = refs[j]
        a = alphas[j].view((-1,) + (1,) * (x.dim() - 1))
        return a * xi + (1 - a) * r, inv.expand(len(rows)), xi - r

    values, n = gradient_sum(problem, torch.arange(problem.n), s, plan, tuple(x.shape[1:]), desc="gradient shap")
    return Result(values, {"n_evals": n, "n_samples": s})


PAIRS = spec("gradient_shap", _pairs)


class GradientShap(Attribution):
    """Gradient SHAP (Lundberg & Lee 2017): for each sample ``n_samples`` draws of a baseline row from
    ``baselines`` (a background set per input), a path position ``a ~ U(0, 1)`` and input noise
    ``N(0, stdevs^2)``; the mean of ``grad f(a x~ + (1 - a) r) * (x~ - r)``.

    The draws follow Captum's order and generators (numpy for baselines and positions, torch for the noise), so
    after ``np.random.seed`` / ``torch.manual_seed`` it returns Captum's numbers; the gradients run on attrkit's
    engine. attrkit's native ``method="gradient_shap"`` shares one draw per ``k`` across samples instead (a
    sample's result then does not depend on the batch). ``return_convergence_delta=True`` also returns Captum's
    delta per drawn pair, ``sum(attr_k) - (f(x~_k) - f(r_k))`` (``N * n_samples`` values).
    """

    def __init__(self, forward_func, multiply_by_inputs: bool = True):
        super().__init__(forward_func)
        if not multiply_by_inputs:
            raise ValueError("multiply_by_inputs=False is not supported by the compat GradientShap")
        self._multiply_by_inputs = True

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, baselines, target=None, n_samples=5, stdevs=0.0, additional_forward_args=None,
                  return_convergence_delta=False):
        xs, single = as_tuple(inputs)
        xs = tuple(x.detach() for x in xs)
        bgs = per_input_background(baselines, xs)
        n, s = xs[0].shape[0], int(n_samples)
        if s < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        refs = [b[np.random.choice(b.shape[0], s * n).tolist()] for b in bgs]            # Captum's order
        sd = stdevs if isinstance(stdevs, tuple) else (float(stdevs),) * len(xs)
        noise = [torch.normal(0, torch.tensor(float(v), device=x.device).repeat((n * s,) + tuple(x.shape[1:])))
                 for x, v in zip(xs, sd)]
        alphas = torch.tensor(np.random.uniform(0.0, 1.0, n * s), dtype=xs[0].dtype)
        pack = lambda parts: parts[0] if len(parts) == 1 else torch.cat([p.reshape(p.shape[0], -1) for p in parts], 1)
        if not return_convergence_delta:
            return self._run(self.forward_func, inputs, PAIRS, target=target,
                             additional_forward_args=additional_forward_args, pair_refs=pack(refs),
                             pair_noise=pack(noise), alphas=alphas, samples_per_input=s)[1]
        # Captum's delta is per drawn pair: run the N * S pairs as samples of their own, then average
        big = tuple(x.repeat_interleave(s, 0) for x in xs)
        tgt, fargs = repeat_per_sample(target, additional_forward_args, s, n)
        _, pairs = self._run(self.forward_func, big[0] if single else big, PAIRS, target=tgt,
                             additional_forward_args=fargs, pair_refs=pack(refs), pair_noise=pack(noise),
                             alphas=alphas, samples_per_input=1)
        parts = (pairs,) if single else pairs
        mean = tuple(v.reshape((n, s) + tuple(v.shape[1:])).mean(1) for v in parts)
        noisy = tuple(b + e for b, e in zip(big, noise))
        total = sum_per_sample(parts)
        gap = _scores(self.forward_func, noisy, tgt, fargs) - _scores(self.forward_func, tuple(refs), tgt, fargs)
        return formatted(mean[0] if single else mean, single), total - gap.to(total.dtype)


def per_input_background(baselines, xs):
    if baselines is None:
        raise ValueError("GradientShap needs baselines= (a background set [M, ...] per input, or a callable)")
    if callable(baselines) and not isinstance(baselines, torch.Tensor):
        baselines = baselines(*xs) if len(xs) > 1 else baselines(xs[0])
    parts = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(parts) != len(xs):
        raise ValueError(f"baselines has {len(parts)} entries for {len(xs)} inputs; give one background set each")
    out = []
    for b, x in zip(parts, xs):
        b = torch.as_tensor(b, dtype=x.dtype, device=x.device) if not isinstance(b, torch.Tensor) else b.detach()
        if b.dim() == 0:
            b = b.expand((1,) + tuple(x.shape[1:]))
        elif b.dim() == x.dim() - 1:
            b = b.unsqueeze(0)
        if tuple(b.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"a background set of shape {tuple(b.shape)} does not match the input's sample shape "
                             f"{tuple(x.shape[1:])}")
        out.append(b.to(x.dtype))
    return out


@torch.no_grad()
def _scores(model, xs, target, args) -> torch.Tensor:
    from ._base import resolve_target
    fargs = forward_args(args) or ()
    model, tgt = resolve_target(model, target, xs, fargs)
    out = model(*xs, *fargs)
    out = out.reshape(out.shape[0], -1)
    if tgt is None:
        return out[:, 0]
    idx = torch.as_tensor(tgt).long().to(out.device).expand(out.shape[0]) if not isinstance(tgt, list) else \
        torch.tensor(tgt, device=out.device)
    return out.gather(1, idx.view(-1, 1)).squeeze(1)


_NT = {"smoothgrad": "smoothgrad", "smoothgrad_sq": "smoothgrad_sq", "vargrad": "vargrad"}
_BASES = {Saliency: "saliency", InputXGradient: "input_x_gradient", IntegratedGradients: "integrated_gradients"}


class NoiseTunnel(Attribution):
    """SmoothGrad / SmoothGrad^2 / VarGrad (Smilkov et al. 2017; Hooker et al. 2019; Adebayo et al. 2018) around
    any compat class: ``nt_samples`` noisy copies ``x + N(0, stdevs^2)`` per sample, drawn from torch's global
    generator in Captum's order. Around ``Saliency``, ``InputXGradient`` and ``IntegratedGradients`` all copies
    run through attrkit's noise wrapper in one batched call (``nt_samples_batch_size`` only bounds rows per call);
    around the other classes the wrapped class runs once on all copies."""

    def __init__(self, attribution_method):
        if not isinstance(attribution_method, Attribution):
            raise TypeError(f"NoiseTunnel wraps a compat attribution class (attrkit.compat.captum), got "
                            f"{type(attribution_method).__name__}")
        super().__init__(attribution_method.forward_func)
        self.attribution_method = attribution_method

    def attribute(self, inputs, nt_type="smoothgrad", nt_samples=5, nt_samples_batch_size=None, stdevs=1.0,
                  draw_baseline_from_distrib=False, **kwargs):
        if nt_type not in _NT:
            raise ValueError(f"nt_type must be one of {', '.join(_NT)}, got {nt_type!r}")
        if draw_baseline_from_distrib:
            raise ValueError("draw_baseline_from_distrib=True is GradientShap's sampling: use GradientShap")
        if kwargs.get("return_convergence_delta"):
            raise ValueError("return_convergence_delta=True under NoiseTunnel is not supported by the compat layer")
        kwargs.pop("return_convergence_delta", None)
        xs, single = as_tuple(inputs)
        xs = tuple(x.detach() for x in xs)
        n, s = xs[0].shape[0], int(nt_samples)
        sd = stdevs if isinstance(stdevs, tuple) else (stdevs,) * len(xs)
        noise = [torch.normal(0, torch.tensor(float(v), device=x.device).repeat((n * s,) + tuple(x.shape[1:])))
                 for x, v in zip(xs, sd)]
        if type(self.attribution_method) in _BASES:
            return self._batched(inputs, xs, noise, nt_type, s, kwargs)
        noisy = tuple(x.repeat_interleave(s, 0) + e for x, e in zip(xs, noise))
        kw = {k: _per_copy(v, n, s) for k, v in kwargs.items()}
        if "additional_forward_args" in kw:
            kw["additional_forward_args"] = repeat_per_sample(None, kwargs["additional_forward_args"], s, n)[1]
        out = self.attribution_method.attribute(noisy[0] if single else noisy, **kw)
        parts = tuple(_reduce(v.reshape((n, s) + tuple(v.shape[1:])).double(), nt_type).to(v.dtype)
                      for v in (out if isinstance(out, tuple) else (out,)))
        return formatted(parts[0] if single else parts, single)

    def _batched(self, inputs, xs, noise, nt_type, s, kwargs):
        base = _BASES[type(self.attribution_method)]
        opts = {}
        target = kwargs.pop("target", None)
        fargs = kwargs.pop("additional_forward_args", None)
        if base == "saliency":
            opts["abs"] = bool(kwargs.pop("abs", True))
        if base == "integrated_gradients":
            opts["baseline"] = baselines_for(kwargs.pop("baselines", None), xs)
            opts["steps"] = int(kwargs.pop("n_steps", 50))
            opts["rule"] = rule_of(kwargs.pop("method", "gausslegendre"))
            kwargs.pop("internal_batch_size", None)
        if kwargs:
            raise TypeError(f"unexpected argument(s) for {type(self.attribution_method).__name__}: {sorted(kwargs)}")
        return self._run(self.forward_func, inputs, _NT[nt_type], target=target, additional_forward_args=fargs,
                         base=base, n_samples=s, perturbations=noise[0] if len(xs) == 1 else tuple(noise), **opts)[1]


def _per_copy(value, n, s):
    """A per-sample argument (target list/tensor, baselines [N, ...]) repeated for the ``s`` copies of each."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n and n > 1:
        return value.repeat_interleave(s, 0)
    if isinstance(value, list) and len(value) == n:
        return [v for v in value for _ in range(s)]
    if isinstance(value, tuple):
        return tuple(_per_copy(v, n, s) for v in value)
    return value


def _reduce(a: torch.Tensor, kind: str) -> torch.Tensor:
    mean = a.mean(1)
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return (a ** 2).mean(1)
    return (a ** 2).mean(1) - mean ** 2
