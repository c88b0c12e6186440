"""Reference values: what "absent" means for a feature (IG baselines and coalition maskers share these).

``"zeros"`` (or any number) a constant; ``"mean"`` the column mean over the batch for tables ``[N, F]``
and each sample's per-channel mean for images/series/volumes; ``"blur"`` a Gaussian blur of the input
(Fong & Vedaldi 2017); ``"noise"`` uniform noise in each sample's value range; or a tensor broadcast to
the input.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .checks import broadcast_to_batch

NAMED = ("zeros", "mean", "blur", "noise")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over the spatial dims of ``[N, C, *spatial]`` (reflect padding)."""
    if x.dim() < 3:
        raise ValueError("blur needs inputs with spatial dimensions [N, C, ...]; tables have none")
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    out = x
    for d in range(len(spatial)):
        # move dim d+2 last, blur as a 1-D signal, move back
        moved = out.movedim(d + 2, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        pad = min(radius, shape[-1] - 1)
        k = kernel if pad == radius else kernel[radius - pad: radius + pad + 1] / kernel[radius - pad: radius + pad + 1].sum()
        if pad > 0:
            flat = F.pad(flat, (pad, pad), mode="reflect")
        flat = F.conv1d(flat, k.view(1, 1, -1))
        out = flat.reshape(shape).movedim(-1, d + 2)
    return out


def make_reference(spec, x: torch.Tensor, *, seed: int | None = None, blur_sigma: float | None = None,
                   name: str = "baseline") -> torch.Tensor:
    """A reference tensor shaped like ``x`` for ``spec`` (a name above, a number, or a tensor).
    Integer inputs get token-id references (:func:`attrkit.core.tokens.token_reference`)."""
    if not x.is_floating_point() and x.dtype != torch.bool:
        from .tokens import token_reference
        return token_reference(spec, x, name=name, seed=seed)
    if spec is None or (isinstance(spec, str) and spec == "zeros"):
        return torch.zeros_like(x)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if isinstance(spec, torch.Tensor):
        return broadcast_to_batch(spec, x, name)
    if isinstance(spec, str):
        if spec == "mean":
            if x.dim() == 2:
                return x.mean(dim=0, keepdim=True).expand_as(x).clone()
            dims = tuple(range(2, x.dim()))
            return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
        if spec == "blur":
            sigma = blur_sigma if blur_sigma is not None else max(x.shape[2:]) / 10 if x.dim() > 2 else 0
            return gaussian_blur(x, float(sigma))
        if spec == "noise":
            g = torch.Generator(device="cpu").manual_seed(0 if seed is None else int(seed))
            u = torch.rand(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
            flat = x.reshape(x.shape[0], -1)
            lo = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
            hi = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
            return lo + u * (hi - lo)
    try:
        import numpy as np
        if isinstance(spec, np.ndarray):
            return broadcast_to_batch(torch.from_numpy(spec), x, name)
    except ImportError:  # pragma: no cover
        pass
    raise ValueError(f"unknown {name} {spec!r}; use one of {', '.join(NAMED)}, a number, or a tensor "
                     "that broadcasts to the input")
