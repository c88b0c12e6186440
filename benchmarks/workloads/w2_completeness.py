"""W2: what it costs to bring every sample's relative completeness gap to <= 1 %.

Gap of sample i: ``|sum IG_i - (f(x_i) - f(0))| / |f(x_i) - f(0)|`` (computed here, the same way for both
libraries). attrkit: Gauss-Legendre, adaptive per sample (``tolerance=0.01``: only the samples that miss are
refined). Captum: its default rule (Gauss-Legendre) at the smallest fixed step count for which every sample
meets the bar, found by a search (doubling, then bisection) before timing. Target: attrkit needs at most half
Captum's gradient evaluations.
"""
from __future__ import annotations

import torch

from .. import inputs
from ..case import Case, Check, Impl, Target, ratio_target
from .common import explain, have, values

BAR = 0.01


def rel_gaps(model, x, target, attr) -> torch.Tensor:
    """Relative completeness gap per sample for a zero baseline."""
    with torch.no_grad():
        fx = model(x).double().gather(1, target.view(-1, 1)).squeeze(1)
        f0 = model(torch.zeros_like(x)).double().gather(1, target.view(-1, 1)).squeeze(1)
    total = torch.as_tensor(attr).double().reshape(x.shape[0], -1).sum(1)
    return (total - (fx - f0)).abs() / (fx - f0).abs().clamp_min(1e-12)


def _captum_gaps(model, x, target, steps: int, method: str, ibs: int) -> float:
    from captum.attr import IntegratedGradients
    a = IntegratedGradients(model).attribute(x, target=target, n_steps=steps, method=method,
                                             internal_batch_size=ibs)
    return float(rel_gaps(model, x, target, a).max())


def search_steps(model, x, target, method: str, max_steps: int, fine: bool, ibs: int = 64) -> dict:
    """Smallest fixed step count whose worst-sample gap is <= BAR: doubling from 4, then bisection."""
    tried = {}

    def worst(s):
        if s not in tried:
            tried[s] = _captum_gaps(model, x, target, s, method, ibs)
        return tried[s]

    lo, hi = 0, None
    s = 4
    while s <= max_steps:
        if worst(s) <= BAR:
            hi = s
            break
        lo, s = s, s * 2
    if hi is None:
        return {"rule": method, "steps": None, "tried": tried, "max_steps": max_steps}
    while hi - lo > (1 if fine else max(1, lo // 4)):
        mid = (lo + hi) // 2
        if worst(mid) <= BAR:
            hi = mid
        else:
            lo = mid
    return {"rule": method, "steps": hi, "worst_gap": tried[hi], "tried": dict(sorted(tried.items()))}


def cases(cfg) -> list[Case]:
    model = inputs.model("bench_cnn")
    x = inputs.crops(16, 64)
    t = inputs.predicted(model, x)
    state = {}
    quick = cfg.quick

    def prepare():
        if not have("captum"):
            return {"captum": "not installed"}
        res = search_steps(model, x, t, "gausslegendre", max_steps=512 if not quick else 256, fine=not quick)
        state["steps"] = res["steps"]
        extra = {"captum_search": {"rule": res["rule"], "smallest_steps": res["steps"],
                                   "worst_gap_by_steps": {k: round(v, 5) for k, v in res["tried"].items()}}}
        if not quick:
            from captum.attr import IntegratedGradients
            a = IntegratedGradients(model).attribute(x, target=t, n_steps=128, method="riemann_trapezoid",
                                                     internal_batch_size=64)
            extra["captum_riemann_trapezoid_128_steps_worst_gap"] = float(rel_gaps(model, x, t, a).max())
        return extra

    def captum_make():
        from captum.attr import IntegratedGradients
        ig = IntegratedGradients(model)
        if state.get("steps") is None:
            raise RuntimeError("no Captum step count up to the search limit meets the 1 % bar")
        return lambda: ig.attribute(x, target=t, n_steps=state["steps"], method="gausslegendre")

    def check(outs):
        res = {}
        for label, out in outs.items():
            worst = float(rel_gaps(model, x, t, values(out)).max())
            ok = worst <= BAR
            res[label] = Check(ok, worst, BAR, "worst-sample relative completeness gap" + ("" if ok else " above the bar"))
        return res

    impls = [Impl("attrkit", "attrkit", lambda: explain(model, x, "integrated_gradients", t, rule="gauss_legendre",
                                                         baseline="zeros", tolerance=BAR),
                  {"rule": "gauss_legendre", "tolerance": BAR, "steps": "default start, doubled per failing sample"},
                  primary=True),
             Impl("attrkit", "attrkit steps=8", lambda: explain(model, x, "integrated_gradients", t,
                                                                rule="gauss_legendre", baseline="zeros",
                                                                tolerance=BAR, steps=8),
                  {"rule": "gauss_legendre", "tolerance": BAR, "steps": "8, doubled per failing sample"})]
    if have("captum"):
        impls.append(Impl("captum", "captum", captum_make,
                          {"method": "gausslegendre (default)", "n_steps": "smallest meeting the bar (search)"}))
    targets = [ratio_target("gradient evaluations for a 1 % gap, attrkit/Captum <= 0.5", "attrkit", "captum", 0.5,
                            field_name="grad_evals")] if have("captum") else []
    return [Case("W2", "W2", "IG to a relative completeness gap <= 1 % on every sample, bench_cnn, 16 x 3x64x64",
                 model, impls, check=check, targets=targets, prepare=prepare, memory=False,
                 notes=["evaluations counted by hooks; peak memory as in W1a (not probed again)"])]
