"""Gradient methods as recipes over the quadrature engine.

Saliency (Simonyan et al. 2014): one point, ``grad f(x)``. Gradient*Input (Shrikumar et al. 2016):
``x * grad f(x)``. Integrated Gradients (Sundararajan et al. 2017, lecture eq. 10-11):
``(x - r) * int_0^1 grad f(r + a (x - r)) da`` by a quadrature rule, with the completeness gap
``|sum IG - (f(x) - f(r))|`` reported and optionally driven below a tolerance. Gradient SHAP / expected
gradients (Lundberg & Lee 2017; Erion et al. 2021): ``E_{r ~ background, a ~ U(0,1)}[grad f(r + a(x - r)) (x - r)]``.
At a layer the same recipes use the layer's activation (IG: the path runs in activation space).
"""
from __future__ import annotations

import torch

from ..core.problem import Problem, Result
from ..core.references import make_reference
from ..core.checks import check_finite
from ..registry import register
from .adaptive import adaptive_path_integral
from .engine import gradient_sum, non_finite_error
from .quadrature import nodes
from .stem import StemTap, affine_stem, pull_back


def _shape(v: torch.Tensor) -> tuple:
    return tuple(v.shape[1:])


def _bcast(t: torch.Tensor, like_dim: int) -> torch.Tensor:
    return t.view((-1,) + (1,) * (like_dim - 1))


def _plain_gradient(problem: Problem, at_layer: bool):
    """``grad f`` at the inputs (or at the layer) and the activation it multiplies (x or the layer output)."""
    x = problem.inputs
    base = problem.activation(x) if at_layer else x
    ones = torch.ones(1, dtype=torch.float64)
    plan = lambda rows, ks: (x[rows], ones.expand(len(rows)), None)
    grad, n = gradient_sum(problem, torch.arange(problem.n), 1, plan, _shape(base),
                           grad_at="layer" if at_layer else "input", desc="gradient")
    return grad, base, n


@register("saliency", family="gradient", summary="gradient of the target output (Simonyan et al. 2014)",
          reference="Simonyan, Vedaldi & Zisserman 2014")
def saliency(problem: Problem, abs: bool = False) -> Result:
    """Gradient of the target with respect to the input (or the layer); ``abs=True`` takes |grad|."""
    grad, _, n = _plain_gradient(problem, problem.layer is not None)
    return Result(grad.abs() if abs else grad, {"n_evals": n})


@register("input_x_gradient", family="gradient", summary="input (or activation) times gradient",
          reference="Shrikumar et al. 2016")
def input_x_gradient(problem: Problem) -> Result:
    """``x * grad f(x)`` (at a layer: activation * gradient at that layer)."""
    grad, base, n = _plain_gradient(problem, problem.layer is not None)
    return Result(grad * base, {"n_evals": n})


def _path_integral(problem: Problem, start: torch.Tensor, end: torch.Tensor, samples: torch.Tensor,
                   steps: int, rule: str, where: str, stem=None) -> tuple[torch.Tensor, int]:
    """``diff * sum_k w_k grad f(start + a_k diff)``; with ``stem`` (see :mod:`.stem`) the gradients are taken
    at the affine first layer's output and pulled back to the input once per sample."""
    alphas, weights = nodes(rule, steps)
    alphas = alphas.to(device=start.device, dtype=start.dtype)
    diff = end - start

    def plan(rows, ks):
        a = _bcast(alphas[ks.to(alphas.device)], start.dim())
        return start[rows] + a * diff[rows], weights[ks], None

    desc = f"integrated gradients ({steps} {rule})"
    if stem is not None:
        acc, n = gradient_sum(problem, samples, steps, plan, stem.shape, grad_at="layer", desc=desc,
                              tap=StemTap(stem.module, stem.name, stem.copy))
        acc = pull_back(stem.module, acc, _shape(start)).to(acc.dtype)
    else:
        acc, n = gradient_sum(problem, samples, steps, plan, _shape(start), where=where, desc=desc)
    return acc * diff[samples], n


@register("integrated_gradients", family="gradient", baseline=True, error="completeness_gap",
          summary="path integral of gradients from a baseline (completeness gap reported; adaptive with tolerance)",
          reference="Sundararajan, Taly & Yan 2017")
def integrated_gradients(problem: Problem, baseline="zeros", steps: int | None = None, rule: str | None = None,
                         tolerance: float | None = None, max_steps: int = 1024,
                         feature_tolerance: float | None = None) -> Result:
    """Integrated Gradients with quadrature ``rule`` and ``steps`` points per sample (default 32 Gauss-Legendre).

    With ``tolerance`` (relative completeness gap ``|sum IG - (f(x) - f(r))| / |f(x) - f(r)|`` per sample) the
    default rule is ``"adaptive"``: a composite Simpson rule whose pieces with the largest own gaps are halved
    until the tolerance or ``max_steps`` points are reached (see ``gradients.adaptive``; ``steps`` = points
    to start from, default 9). The gap bounds only the sum of the attributions: ``info["feature_error_estimate"]``
    gives each sample's per-feature error estimate (relative L2, conservative), and ``feature_tolerance=``
    refines until that estimate is below it too. With a fixed ``rule`` and a tolerance, the samples that miss are recomputed with twice the points instead. ``info["steps"]`` gives the
    points each sample used.
    """
    x = problem.inputs
    ref = make_reference(baseline, x, seed=problem.seed)
    if rule is None:
        rule = "adaptive" if tolerance is not None or feature_tolerance is not None else "gauss_legendre"
    for name, tol in (("tolerance", tolerance), ("feature_tolerance", feature_tolerance)):
        if tol is not None and not tol > 0:
            raise ValueError(f"{name} must be > 0, got {tol!r}")
    if feature_tolerance is not None and rule != "adaptive":
        raise ValueError("feature_tolerance= needs rule='adaptive' (the default when a tolerance is given): the "
                         "per-feature error estimate comes from its nested points")
    if rule == "adaptive":
        if tolerance is None and feature_tolerance is None:
            raise ValueError("rule='adaptive' refines the path until a tolerance is met: pass tolerance= "
                             "(a relative completeness gap, e.g. 0.01)")
        nodes("gauss_legendre", steps or 9)  # validates steps
    else:
        steps = 32 if steps is None else steps
        nodes(rule, steps)  # validates rule/steps early
    at_layer = problem.layer is not None
    start, end = (problem.activation(ref), problem.activation(x)) if at_layer else (ref, x)
    all_rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, all_rows).detach().to(torch.float64)
    f_r = problem.evaluate(ref, all_rows).detach().to(torch.float64)
    if not torch.isfinite(f_r).all():
        raise non_finite_error(int((~torch.isfinite(f_r)).sum()), problem.n, "baselines (the path's start)")
    n_evals = problem.n
    delta = f_x - f_r

    def gaps(v, rows):
        total = v.reshape(len(rows), -1).to(torch.float64).sum(1)
        gap = (total - delta[rows]).abs()
        return gap, gap / delta[rows].abs().clamp_min(1e-12)

    where = "layer" if at_layer else "input"
    info = {}
    if rule == "adaptive":
        values, n, used, feature_error = adaptive_path_integral(problem, start, end, where, tolerance, max_steps,
                                                                steps or 9, feature_tolerance)
        n_evals += n
        gap, rel = gaps(values, all_rows)
        info["feature_error_estimate"] = feature_error.to(values.dtype)
    else:
        stem = None if at_layer or steps < 2 else affine_stem(problem)
        info["stem"] = stem.name if stem is not None else None
        values, n = _path_integral(problem, start, end, all_rows, steps, rule, where, stem)
        n_evals += n
        gap, rel = gaps(values, all_rows)
        used = torch.full((problem.n,), steps, dtype=torch.long)
        k = steps
        todo = all_rows[rel > tolerance] if tolerance is not None else all_rows[:0]
        while len(todo) and k * 2 <= max_steps:
            k *= 2
            v, n = _path_integral(problem, start, end, todo, k, rule, where, stem)
            n_evals += n
            g, r = gaps(v, todo)
            values[todo], gap[todo], rel[todo], used[todo] = v, g, r, k
            todo = todo[r > tolerance]
    if tolerance is not None or feature_tolerance is not None:
        met = torch.ones(problem.n, dtype=torch.bool)
        if tolerance is not None:
            met &= rel <= tolerance
        if feature_tolerance is not None:
            met &= info["feature_error_estimate"].to(torch.float64) <= feature_tolerance
        info["tolerance_met"] = bool(met.all())
        info["steps"] = used
    vt = values.dtype
    info.update({"n_evals": n_evals, "completeness_gap": gap.to(vt), "relative_gap": rel.to(vt),
                 "rule": rule, "steps_requested": steps, "f_x": f_x.to(vt), "f_baseline": f_r.to(vt)})
    return Result(values, info, baseline=ref)


def _background(problem: Problem, baseline) -> tuple[torch.Tensor, bool]:
    """Background set ``[M, ...]`` shared by all samples, or per-sample references ``[N, ...]``."""
    x = problem.inputs
    if isinstance(baseline, torch.Tensor) and baseline.dim() == x.dim() and baseline.shape[1:] == x.shape[1:]:
        check_finite(baseline, "baseline")
        return baseline.to(device=x.device, dtype=x.dtype), True
    return make_reference(baseline, x, seed=problem.seed), False


@register("gradient_shap", family="gradient", baseline=True, sampled=True,
          summary="expected gradients: random baselines from a background set, random path positions",
          reference="Lundberg & Lee 2017; Erion et al. 2021")
def gradient_shap(problem: Problem, baseline="zeros", n_samples: int = 20, stdev: float = 0.0) -> Result:
    """``mean_k grad f(r_k + a_k (x~ - r_k)) * (x~ - r_k)`` with ``r_k`` drawn from the background
    (``baseline`` given as ``[M, ...]``), ``a_k ~ U(0, 1)`` and ``x~ = x + N(0, stdev^2)``. Seeded."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if isinstance(stdev, bool) or not isinstance(stdev, (int, float)) or not 0 <= stdev < float("inf"):
        raise ValueError(f"stdev must be a finite number >= 0 (the standard deviation of the input noise), "
                         f"got {stdev!r}")
    x = problem.inputs
    bg, shared = _background(problem, baseline)
    g = torch.Generator().manual_seed(0 if problem.seed is None else int(problem.seed))
    n, k = problem.n, n_samples
    # one draw of (background row, path position, noise) per k, shared by every sample: a sample's result does
    # not depend on its position in the batch or on the other samples
    pick = torch.randint(0, bg.shape[0], (k,), generator=g).expand(n, k) if shared else \
        torch.arange(n).view(-1, 1).expand(n, k)
    alpha = torch.rand((k,), generator=g, dtype=torch.float64).expand(n, k)
    noise = None
    if stdev > 0:
        unit = torch.randn((k,) + tuple(x.shape[1:]), generator=g) * stdev
        noise = unit.unsqueeze(0).expand((n, k) + tuple(x.shape[1:])).to(x.device, x.dtype)
    at_layer = problem.layer is not None
    act_x = problem.activation(x) if at_layer else None
    act_bg = problem.activation(bg) if at_layer else None
    inv_k = torch.full((1,), 1.0 / k, dtype=torch.float64)

    def plan(rows, ks):
        r = bg[pick[rows, ks].to(bg.device)]
        xi = x[rows] if noise is None else x[rows] + noise[rows, ks]
        a = _bcast(alpha[rows, ks].to(x.device, x.dtype), x.dim())
        if at_layer:
            ax = act_x[rows] if noise is None else problem.activation(xi, rows)
            mult = ax - act_bg[pick[rows, ks].to(bg.device)]
        else:
            mult = xi - r
        return r + a * (xi - r), inv_k.expand(len(rows)), mult

    shape = _shape(act_x) if at_layer else _shape(x)
    values, n_ev = gradient_sum(problem, torch.arange(n), k, plan, shape,
                                grad_at="layer" if at_layer else "input", desc="gradient shap")
    return Result(values, {"n_evals": n_ev, "n_samples": k, "stdev": stdev},
                  baseline=bg if shared else bg)
