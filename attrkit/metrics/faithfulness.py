"""Faithfulness: does the map rank the inputs by how much the model needs them?

- :func:`deletion` / :func:`insertion` (Petsiuk et al. 2018, RISE): remove (or insert) units in order of
  attribution and follow the target's probability; area under the curve (lower for deletion, higher for
  insertion is better).
- :func:`morf_lerf` (Samek et al. 2017): most-relevant-first and least-relevant-first deletion curves and the
  area between them (``AUC_LeRF - AUC_MoRF``, larger is better).
- :func:`faithfulness_correlation` (Bhatt et al. 2020): correlation between the attribution mass of random
  subsets and the output drop when they are removed.
- :func:`infidelity` (Yeh et al. 2019): ``E_I[(I . F - (f(x) - f(x - I)))^2]`` for Gaussian perturbations ``I``.
- :func:`max_sensitivity` (Yeh et al. 2019): ``max_{|d|_inf <= r} |F(x + d) - F(x)| / |F(x)|``.

Units (what is removed together) are the attribution's players when it has them (superpixels, grid cells),
``players=`` given here, one feature per column for tables, or one spatial position (all channels) for images.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.modules import LayerTap, call_model, eval_mode, resolve_layer
from ..core.references import make_reference
from ._common import (MetricResult, Scorer, check_inputs, explain_values, fixed_target, make_units,
                      nanmean, progress_bar, resolve_attribution, to_np)

__all__ = ["deletion", "insertion", "morf_lerf", "perturbation_curve", "faithfulness_correlation", "infidelity",
           "max_sensitivity"]


def reference(baseline, x: torch.Tensor, *, seed=None, blur_sigma=None) -> torch.Tensor:
    """``make_reference`` with ``"auto"``: blur for inputs with spatial dimensions, zeros for tables."""
    if isinstance(baseline, str) and baseline == "auto":
        baseline = "blur" if x.dim() > 2 else "zeros"
    return make_reference(baseline, x, seed=seed, blur_sigma=blur_sigma)


def _check_steps(steps):
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")


def perturbation_curve(model, x, attribution, target=None, *, mode: str = "deletion", order: str = "morf",
                       baseline="auto", steps: int = 20, players=None, output: str = "probability",
                       batch_size: int | None = None, seed: int | None = 0, progress: bool | None = None,
                       blur_sigma: float | None = None, **options) -> MetricResult:
    """The curve behind deletion/insertion/MoRF/LeRF: ``steps + 1`` points at fractions ``k / steps`` of the
    units removed (``mode="deletion"``: replaced by the reference) or inserted (``"insertion"``: the rest is the
    reference), taken most relevant first (``order="morf"``), least relevant first (``"lerf"``) or at random
    (``"random"``). All points of all samples are built and scored in chunks (``batch_size`` rows), no grad.

    ``baseline``: the reference (``"zeros"``, ``"mean"``, ``"blur"``, ``"noise"``, a number or a tensor);
    ``"auto"`` (default) is a Gaussian blur of the input (sigma = size / 10) for images, series and volumes and
    zeros for tables. Blur rather than black: on the built-in shapes CNN, setting 10 % of the pixels to black
    *at random* already drops the predicted class's probability from 1.0 to about 0.2, so a zero masker
    measures the model's reaction to the artefact, not the map (Rong et al. 2022, ROAD); with blur, random
    deletion lowers it gradually and IG's deletion AUC is clearly below a random map's.
    ``output``: ``"probability"`` (softmax of the target class) or ``"target"`` (the raw output).
    ``per_sample``: the area under each curve (trapezoid over the removed fraction in [0, 1]);
    ``details["curves"]`` ``[N, steps + 1]`` and ``details["fractions"]``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if order not in ("morf", "lerf", "random"):
        raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    _check_steps(steps)
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    units = make_units(attr, x, players)
    if order == "random":
        units.scores = torch.rand(units.scores.shape, generator=torch.Generator().manual_seed(
            0 if seed is None else int(seed) + 1), dtype=torch.float64)
    rank = units.order(seed, descending=(order != "lerf"))
    ref = reference(baseline, x, seed=seed, blur_sigma=blur_sigma)
    scorer = Scorer(model, x, target, output, batch_size, attr)
    n, k1 = x.shape[0], steps + 1
    fractions = torch.arange(k1, dtype=torch.float64) / steps
    counts = torch.round(fractions.view(1, -1) * units.n_valid.view(-1, 1).to(torch.float64)).long()  # [N, k1]
    xc, rc = x.cpu(), ref.cpu()

    def make(ids):
        i = torch.div(ids, k1, rounding_mode="floor")
        k = ids - i * k1
        sel = rank[i] < counts[i, k].view(-1, 1)             # units taken at this step
        m = units.mask(sel, i)
        if mode == "deletion":
            pts = torch.where(m, rc[i], xc[i])
        else:
            pts = torch.where(m, xc[i], rc[i])
        return pts.to(x.device), i

    flat = scorer.batches(n * k1, make, f"{mode} curve ({order})", progress)
    curves = flat.view(n, k1)
    auc = torch.trapezoid(curves, fractions.view(1, -1), dim=1)
    name = {"deletion": "deletion_auc", "insertion": "insertion_auc"}[mode]
    return MetricResult(name, float(auc.mean()), to_np(auc), None,
                        {"curves": to_np(curves), "fractions": to_np(fractions), "mode": mode, "order": order,
                         "units": units.kind, "n_units": to_np(units.n_valid), "output": output,
                         "baseline": baseline if isinstance(baseline, (str, int, float)) else "tensor",
                         "n_evals": scorer.n_evals, "method": attr.method})


def deletion(model, x, attribution, target=None, *, baseline="auto", steps: int = 20, players=None,
             output: str = "probability", batch_size: int | None = None, seed: int | None = 0,
             progress: bool | None = None, **options) -> MetricResult:
    """Deletion curve (Petsiuk et al. 2018): replace units by ``baseline`` most relevant first; AUC of the
    target's probability over the removed fraction (lower = the map found what the model needs). The default
    masker is a blurred copy for images (see :func:`perturbation_curve`; Petsiuk et al. used black pixels,
    ``baseline="zeros"``).

    >>> import torch
    >>> from attrkit.metrics import deletion
    >>> m = torch.nn.Linear(4, 1)
    >>> r = deletion(m, torch.ones(3, 4), "integrated_gradients", steps=4, output="target")
    >>> r.details["curves"].shape
    (3, 5)
    """
    return perturbation_curve(model, x, attribution, target, mode="deletion", order="morf", baseline=baseline,
                              steps=steps, players=players, output=output, batch_size=batch_size, seed=seed,
                              progress=progress, **options)


def insertion(model, x, attribution, target=None, *, baseline="auto", steps: int = 20, players=None,
              output: str = "probability", batch_size: int | None = None, seed: int | None = 0,
              progress: bool | None = None, **options) -> MetricResult:
    """Insertion curve (Petsiuk et al. 2018): start from ``baseline`` (a blurred copy for images by default, as
    in the paper; zeros for tables) and put the units back most relevant first; AUC of the target's probability
    (higher is better)."""
    return perturbation_curve(model, x, attribution, target, mode="insertion", order="morf", baseline=baseline,
                              steps=steps, players=players, output=output, batch_size=batch_size, seed=seed,
                              progress=progress, **options)


def morf_lerf(model, x, attribution, target=None, *, baseline="auto", steps: int = 20, players=None,
              output: str = "probability", batch_size: int | None = None, seed: int | None = 0,
              progress: bool | None = None, **options) -> MetricResult:
    """MoRF and LeRF deletion curves (Samek et al. 2017) and the area between them:
    ``per_sample = AUC_LeRF - AUC_MoRF`` (larger = the ordering separates needed from unneeded units).
    ``details``: ``morf_auc``, ``lerf_auc`` (per sample), ``morf_curves``, ``lerf_curves``."""
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    kw = dict(baseline=baseline, steps=steps, players=players, output=output, batch_size=batch_size, seed=seed,
              progress=progress)
    mo = perturbation_curve(model, x, attr, target, mode="deletion", order="morf", **kw)
    le = perturbation_curve(model, x, attr, target, mode="deletion", order="lerf", **kw)
    diff = le.per_sample - mo.per_sample
    return MetricResult("morf_lerf", float(np.mean(diff)), diff, None,
                        {"morf_auc": mo.per_sample, "lerf_auc": le.per_sample, "morf": mo.score, "lerf": le.score,
                         "morf_curves": mo.details["curves"], "lerf_curves": le.details["curves"],
                         "fractions": mo.details["fractions"], "method": attr.method})


def faithfulness_correlation(model, x, attribution, target=None, *, n_subsets: int = 64, subset_size=0.1,
                             baseline="auto", players=None, output: str = "target",
                             batch_size: int | None = None, seed: int | None = 0, progress: bool | None = None,
                             **options) -> MetricResult:
    """Faithfulness correlation (Bhatt et al. 2020): for ``n_subsets`` random unit subsets ``S`` of
    ``subset_size`` units (a fraction when < 1), the Pearson correlation between ``sum_{i in S} F_i`` and
    ``f(x) - f(x with S replaced by the baseline)``. ``per_sample``: the correlation (1 is best)."""
    from ._stats import pearson
    if not isinstance(n_subsets, int) or n_subsets < 2:
        raise ValueError(f"n_subsets must be an int >= 2, got {n_subsets!r}")
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    units = make_units(attr, x, players)
    n, u = units.scores.shape
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    nv = units.n_valid
    size = (subset_size * nv.to(torch.float64)).round().long().clamp_min(1) if subset_size < 1 else \
        torch.full((n,), int(subset_size)).minimum(nv)
    if (subset_size <= 0):
        raise ValueError(f"subset_size must be > 0, got {subset_size!r}")
    keys = torch.rand((n, n_subsets, u), generator=g, dtype=torch.float64)
    keys = torch.where(units.valid.unsqueeze(1), keys, torch.full_like(keys, 2.0))
    rank = keys.argsort(2).argsort(2)
    sel = rank < size.view(n, 1, 1)                                   # [N, S, U]
    attr_sum = (sel.to(torch.float64) * units.scores.unsqueeze(1)).sum(2)
    ref = reference(baseline, x, seed=seed)
    scorer = Scorer(model, x, target, output, batch_size, attr)
    xc, rc = x.cpu(), ref.cpu()

    def make(ids):
        i = torch.div(ids, n_subsets, rounding_mode="floor")
        j = ids - i * n_subsets
        m = units.mask(sel[i, j], i)
        return torch.where(m, rc[i], xc[i]).to(x.device), i

    vals = scorer.batches(n * n_subsets, make, "faithfulness correlation", progress).view(n, n_subsets)
    drop = scorer.base().cpu().view(-1, 1) - vals
    corr = pearson(attr_sum, drop, constant=float("nan"))
    return MetricResult("faithfulness_correlation", nanmean(to_np(corr)), to_np(corr), None,
                        {"attribution_sums": to_np(attr_sum), "output_drops": to_np(drop), "units": units.kind,
                         "subset_sizes": to_np(size), "n_evals": scorer.n_evals, "method": attr.method})


def infidelity(model, x, attribution, target=None, *, n_samples: int = 32, noise_std: float = 0.1,
               perturbation: str = "gaussian", baseline="zeros", normalise: bool = True,
               batch_size: int | None = None, seed: int | None = 0, progress: bool | None = None,
               **options) -> MetricResult:
    """Infidelity (Yeh et al. 2019): ``E_I[(I . F - (f(x) - f(x - I)))^2]`` over random perturbations ``I`` of
    every element of the input — or of the attributed layer's activation for a layer attribution.

    ``perturbation="gaussian"``: ``I ~ N(0, noise_std^2)`` and the prediction ``I . F`` (Yeh et al.'s
    definition; exact for gradient-type maps of a linear model). ``"scaled"``: ``I = z * (x - r)`` with
    ``z ~ N(0, noise_std^2)``, ``r`` the ``baseline``, and the prediction ``z . F`` — the form for maps that share
    out ``f(x) - f(r)`` (IG, Shapley, gradient x input; exact for IG of a linear model).
    ``normalise=True`` first rescales the attribution by the least-squares factor
    ``beta = E[p d] / E[p^2]`` per sample (Yeh et al., section 4), so the number compares the *shape* of maps
    across methods whatever their scale. ``per_sample``: the infidelity (0 is best); ``details["beta"]`` the
    factors, ``details["raw"]`` the unnormalised values. The output is the raw target (what the attribution
    explains)."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std!r}")
    if perturbation not in ("gaussian", "scaled"):
        raise ValueError(f"perturbation must be 'gaussian' or 'scaled', got {perturbation!r}")
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    scorer = Scorer(model, x, target, "target", batch_size, attr)
    n = x.shape[0]
    vals = attr.values.detach().to(torch.float64).cpu()
    at_layer = attr.layer is not None and tuple(vals.shape) != tuple(x.shape)
    if not at_layer and tuple(vals.shape) != tuple(x.shape):
        raise ValueError(f"attribution values {tuple(vals.shape)} are not shaped like the inputs {tuple(x.shape)}")
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    total = n * n_samples
    preds = torch.empty(total, dtype=torch.float64)
    f_pert = torch.empty(total, dtype=torch.float64)
    shape = tuple(vals.shape[1:])
    if at_layer:
        _, mod = resolve_layer(model, attr.layer)
        point = _activation(model, x, mod, attr.layer, scorer.step).cpu().to(torch.float64)
        ref = torch.zeros_like(point) if baseline in (None, "zeros", 0) else \
            _activation(model, make_reference(baseline, x, seed=seed), mod, attr.layer, scorer.step).cpu().to(torch.float64)
    else:
        point = x.detach().cpu().to(torch.float64)
        ref = make_reference(baseline, x, seed=seed).cpu().to(torch.float64)
    span = point - ref
    starts = range(0, total, scorer.step)
    for s in progress_bar(starts, len(starts), "infidelity", progress):
        ids = torch.arange(s, min(s + scorer.step, total))
        i = torch.div(ids, n_samples, rounding_mode="floor")
        z = torch.randn((len(ids),) + shape, generator=g, dtype=torch.float64) * noise_std
        pert_amount = z if perturbation == "gaussian" else z * span[i]
        preds[ids] = (z * vals[i]).reshape(len(ids), -1).sum(1) if perturbation == "scaled" else \
            (pert_amount * vals[i]).reshape(len(ids), -1).sum(1)
        pert = (point[i] - pert_amount).to(x.dtype).to(x.device)
        if at_layer:
            with torch.inference_mode(), eval_mode(model, warn=False), LayerTap(mod, attr.layer) as tap:
                tap.replace_with = pert
                out = call_model(model, x[i.to(x.device)])
            f_pert[ids] = scorer._score(out, i).cpu()
            scorer.n_evals += len(ids)
        else:
            f_pert[ids] = scorer(pert, i).cpu()
    base = scorer.base().cpu()
    d = base.repeat_interleave(n_samples) - f_pert
    p, d = preds.view(n, n_samples), d.view(n, n_samples)
    raw = ((p - d) ** 2).mean(1)
    beta = (p * d).mean(1) / (p ** 2).mean(1).clamp_min(1e-300)
    scaled = ((beta.view(-1, 1) * p - d) ** 2).mean(1)
    per = scaled if normalise else raw
    return MetricResult("infidelity", float(per.mean()), to_np(per), None,
                        {"raw": to_np(raw), "beta": to_np(beta), "normalised": normalise, "noise_std": noise_std,
                         "perturbation": perturbation, "at_layer": at_layer, "n_evals": scorer.n_evals,
                         "method": attr.method})


@torch.inference_mode()
def _activation(model, x, mod, name, step):
    parts = []
    with eval_mode(model, warn=False), LayerTap(mod, name) as tap:
        for s in range(0, x.shape[0], step):
            tap.reset()
            call_model(model, x[s:s + step])
            parts.append(tap.output.detach())
    return torch.cat(parts)


def max_sensitivity(model, x, method="integrated_gradients", target=None, *, radius: float = 0.02,
                    n_samples: int = 8, seed: int | None = 0, batch_size: int | None = None,
                    **options) -> MetricResult:
    """Max-sensitivity (Yeh et al. 2019): ``max_j |F(x + d_j) - F(x)|_2 / |F(x)|_2`` over ``n_samples``
    perturbations ``d_j ~ U(-radius, radius)`` per element. The target is held at the class explained at
    ``x`` (the predicted class when ``target`` is None). All perturbed copies are explained in one call.
    ``per_sample``: the relative change (0 = perfectly robust)."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    x = check_inputs(model, x)
    n = x.shape[0]
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    delta = ((torch.rand((n * n_samples,) + tuple(x.shape[1:]), generator=g) * 2 - 1) * radius).to(x)
    xs = torch.cat([x, x.repeat_interleave(n_samples, dim=0) + delta])
    tgt = torch.cat([fixed, fixed.repeat_interleave(n_samples)]) if isinstance(fixed, torch.Tensor) else fixed
    kw = {k: (torch.cat([v, v.repeat_interleave(n_samples, dim=0)]) if isinstance(v, torch.Tensor) and v.dim() >= 1
              and v.shape[0] == n and n > 1 else v) for k, v in options.items()}
    if isinstance(method, str):
        kw.setdefault("batch_size", batch_size)
        kw.setdefault("seed", seed)
    v = explain_values(model, xs, method, tgt, kw).detach().cpu().to(torch.float64).reshape(xs.shape[0], -1)
    v0, vp = v[:n], v[n:].view(n, n_samples, -1)
    rel = (vp - v0.unsqueeze(1)).norm(dim=2) / v0.norm(dim=1, keepdim=True).clamp_min(1e-300)
    per = rel.amax(1)
    return MetricResult("max_sensitivity", float(per.mean()), to_np(per), None,
                        {"radius": radius, "n_samples": n_samples, "all": to_np(rel)})
