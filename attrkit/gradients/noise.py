"""The noise wrapper: SmoothGrad, SmoothGrad^2 and VarGrad around any gradient method.

For ``S`` noisy copies ``x + e_s``, ``e_s ~ N(0, sigma^2)`` with ``sigma = noise_level * (max x - min x)``
(Smilkov et al. 2017), the base attribution ``A_s`` is computed once per copy (all copies batched by the
engine) and reduced: SmoothGrad ``mean_s A_s``; SmoothGrad^2 ``mean_s A_s^2`` (Hooker et al. 2019);
VarGrad ``mean_s A_s^2 - (mean_s A_s)^2`` (Adebayo et al. 2018). ``info["std_err"]`` is the standard error
of that estimate per element.

The noise is seeded (``seed=``; ``None`` draws a fresh seed, recorded in ``info["seed"]``). The ``S`` standard
draws are shared by every sample of the batch (each scaled by its own ``sigma``), so a sample's result does not
depend on its position in the batch, on the other samples, or on the chunk size.
"""
from __future__ import annotations

import math
import numbers

import torch

from ..core.problem import Problem, Result
from ..registry import register, get

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
# what ``explain(..., noise={...})`` may set: the options of :func:`with_noise` other than the wrapped method
NOISE_OPTIONS = ("n_samples", "noise_level", "kind", "noise_std", "perturbations")


def noise_options(noise) -> dict:
    """``explain``'s ``noise=`` as options of :func:`with_noise`: True (defaults), a noise level, or a dict of
    :data:`NOISE_OPTIONS`."""
    if noise is True:
        return {}
    if isinstance(noise, (int, float)):
        return {"noise_level": float(noise)}
    if isinstance(noise, dict):
        bad = set(noise) - set(NOISE_OPTIONS)
        if bad:
            raise ValueError(f"unknown noise option(s) {sorted(bad)}; allowed: {sorted(NOISE_OPTIONS)}")
        return dict(noise)
    raise TypeError("noise= must be True, a noise level (float) or a dict of options")


def with_noise(problem: Problem, base: str = "saliency", n_samples: int = 20, noise_level: float = 0.15,
               kind: str = "smoothgrad", noise_std: float | None = None, perturbations: torch.Tensor | None = None,
               **base_options) -> Result:
    """Run gradient method ``base`` on ``n_samples`` noisy copies of each input and reduce them (``kind``).

    ``perturbations`` gives the noise explicitly (``[N * S, ...]`` in sample-major order, or ``[N, S, ...]``),
    e.g. to reproduce another library's draws; otherwise they are drawn from ``seed``.
    """
    spec = get(base)
    if spec.family != "gradient" or spec.name in KINDS:
        raise ValueError(f"the noise wrapper needs a plain gradient method as base, not {base!r}; use one of "
                         "saliency, input_x_gradient, integrated_gradients, gradient_shap")
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; use one of {', '.join(KINDS)}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    x = problem.inputs
    n, s = problem.n, n_samples
    if perturbations is not None:
        if problem.layout is not None and isinstance(perturbations, (tuple, list, dict)):   # one per input
            parts = problem.layout.as_list(perturbations, "perturbations")
            perturbations = torch.cat([torch.as_tensor(p).reshape(n * s, -1) for p in parts], 1)
        eps = perturbations.to(device=x.device, dtype=x.dtype)
        if eps.shape == (n, s) + tuple(x.shape[1:]):
            eps = eps.reshape((n * s,) + tuple(x.shape[1:]))
        if eps.shape != (n * s,) + tuple(x.shape[1:]):
            raise ValueError(f"perturbations must have shape {(n * s,) + tuple(x.shape[1:])} or "
                             f"{(n, s) + tuple(x.shape[1:])}, got {tuple(perturbations.shape)}")
        sigma = None
    else:
        sigma = _sigma(problem, noise_std, noise_level)            # [n] or, for several inputs, [n, inputs]
        g = torch.Generator().manual_seed(0 if problem.seed is None else int(problem.seed))
        # one standard draw per copy, shared by every sample (scaled by its own sigma): a sample's noise, hence
        # its result, does not depend on its position in the batch or on the batch's other samples
        unit = torch.randn((s,) + tuple(x.shape[1:]), generator=g).to(x.device, x.dtype)
        eps = unit.unsqueeze(0).expand((n, s) + tuple(x.shape[1:]))
        if sigma.dim() == 2:     # several inputs: each input's noise scaled by its own range (Captum: stdevs per input)
            sizes = torch.tensor(problem.layout.sizes, device=x.device)
            eps = eps * sigma.repeat_interleave(sizes, 1).unsqueeze(1)
        else:
            eps = eps * sigma.view((n, 1) + (1,) * (x.dim() - 1))
        eps = eps.reshape((n * s,) + tuple(x.shape[1:]))
    noisy = x.repeat_interleave(s, dim=0) + eps
    for key, val in list(base_options.items()):   # per-sample tensors follow their sample
        if isinstance(val, torch.Tensor) and key == "baseline" and val.dim() == x.dim() and val.shape[0] == n \
                and base != "gradient_shap":
            base_options[key] = val.repeat_interleave(s, dim=0)
    sub = problem.with_inputs(noisy, problem.target.repeat_interleave(s), rows=torch.arange(n).repeat_interleave(s))
    with torch.no_grad():
        sub.outputs = sub.run(sub.inputs)
    res = spec.fn(sub, **base_options)
    a = res.values.reshape((n, s) + tuple(res.values.shape[1:])).to(torch.float64)
    mean = a.mean(1)
    if kind == "smoothgrad":
        values = mean
        se = a.std(1, unbiased=True) / math.sqrt(s) if s > 1 else torch.zeros_like(mean)
    elif kind == "smoothgrad_sq":
        sq = a ** 2
        values = sq.mean(1)
        se = sq.std(1, unbiased=True) / math.sqrt(s) if s > 1 else torch.zeros_like(mean)
    else:
        c = a - mean.unsqueeze(1)
        values = (c ** 2).mean(1)
        m4 = (c ** 4).mean(1)
        se = ((m4 - values ** 2).clamp_min(0) / s).sqrt()
    info = {"n_evals": res.info.get("n_evals", 0) + n * s, "n_samples": s, "noise": kind, "base": base,
            "std_err": se.to(x.dtype)}
    if sigma is not None:
        info["noise_std"] = sigma
    for key, val in res.info.items():
        if key in info:
            continue
        if isinstance(val, torch.Tensor) and val.dim() >= 1 and val.shape[0] == n * s:
            info[key] = val.reshape((n, s) + tuple(val.shape[1:])).to(torch.float64).mean(1).to(x.dtype)
        elif not isinstance(val, torch.Tensor):
            info[key] = val
    return Result(values.to(x.dtype), info)


def _check_level(name: str, v, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0 ({what}), got {v!r}")


def _sigma(problem: Problem, noise_std, noise_level) -> torch.Tensor:
    """The noise's standard deviation per sample (``[N]``), or per sample and input (``[N, K]``) for several
    inputs: ``noise_std`` (a number, or one per input), else ``noise_level`` times the value range."""
    x, n, layout = problem.inputs, problem.n, problem.layout
    if noise_std is not None:
        if layout is not None:
            stds = layout.as_list(noise_std, "noise_std") if isinstance(noise_std, (tuple, list, dict)) \
                else [noise_std] * len(layout)
            for v in stds:
                _check_level("noise_std", v, "the standard deviation of the noise")
            return torch.tensor([[float(v) for v in stds]] * n, dtype=x.dtype, device=x.device)
        _check_level("noise_std", noise_std, "the standard deviation of the noise")
        return torch.full((n,), float(noise_std), dtype=x.dtype, device=x.device)
    _check_level("noise_level", noise_level, "a fraction of each input's value range")
    if layout is not None:
        return torch.stack([noise_level * (p.reshape(n, -1).max(1).values - p.reshape(n, -1).min(1).values)
                            for p in layout.unpack(x)], 1)
    flat = x.reshape(n, -1)
    return noise_level * (flat.max(1).values - flat.min(1).values)


def _make(kind: str, summary: str, ref: str):
    def method(problem: Problem, base: str = "saliency", n_samples: int = 20, noise_level: float = 0.15,
               noise_std: float | None = None, perturbations: torch.Tensor | None = None,
               **base_options) -> Result:
        return with_noise(problem, base, n_samples, noise_level, kind, noise_std, perturbations, **base_options)
    method.__name__ = kind
    method.__doc__ = f"{summary} ({ref}); ``base=`` names the gradient method it wraps."
    register(kind, family="gradient", sampled=True, summary=summary, reference=ref, error="std_err")(method)
    return method


smoothgrad = _make("smoothgrad", "mean of a gradient method over noisy copies of the input", "Smilkov et al. 2017")
smoothgrad_sq = _make("smoothgrad_sq", "mean of squared attributions over noisy copies", "Hooker et al. 2019")
vargrad = _make("vargrad", "variance of attributions over noisy copies", "Adebayo et al. 2018")
