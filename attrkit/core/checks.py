"""Input validation: clear errors instead of silent wrong answers."""
from __future__ import annotations

import numbers
import os

import torch


def as_batch(x, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a batch ``[N, ...]`` with finite values (floating point, or integer ids/codes)."""
    x = from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array) batch [N, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must be a batch with a leading sample dimension [N, ...], got shape "
                         f"{tuple(x.shape)}; add one with {name}.unsqueeze(0)")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0)")
    if x.dtype == torch.bool or x.is_complex():
        x = x.float()      # integer inputs (token ids, codes) stay integer: see core.tokens
    check_finite(x, name)
    return x


def from_numpy(x):
    """A NumPy array as a tensor (sharing its memory); anything else as it is."""
    if not isinstance(x, torch.Tensor) and type(x).__module__ == "numpy" and type(x).__name__ == "ndarray":
        return torch.from_numpy(x)
    return x


def per_dim(v, nd: int, name: str, exact: bool = True) -> tuple[int, ...]:
    """An int or a sequence of ints as one int per dimension (``v`` repeated ``nd`` times for an int); ``exact``:
    also check that there are ``nd`` of them and that they are positive (otherwise the caller checks them)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v,) * nd
    try:
        v = tuple(int(c) for c in v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {nd if exact else ''} ints, got {v!r}".replace("  ", " ")) \
            from None
    if exact and (len(v) != nd or any(c < 1 for c in v)):
        raise ValueError(f"{name} must be a positive int or a tuple of {nd} positive ints, got {v!r}")
    return v


def check_finite(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point() and not torch.isfinite(t).all():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(torch.isinf(t).sum())
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite values; attributions of "
                         "non-finite inputs are meaningless — clean or impute them first")


def broadcast_to_batch(ref: torch.Tensor, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """Broadcast a reference tensor to ``x``'s shape, or explain why it cannot be."""
    check_finite(ref, name)
    try:
        return torch.broadcast_to(ref.to(device=x.device, dtype=x.dtype), x.shape).contiguous()
    except RuntimeError:
        shapes = list(dict.fromkeys([tuple(x.shape), (1,) + tuple(x.shape[1:]), tuple(x.shape[1:])]))
        background = " (a background set of rows: ak.Background(rows), for games)" \
            if ref.dim() == x.dim() and tuple(ref.shape[1:]) == tuple(x.shape[1:]) else ""
        raise ValueError(f"{name} of shape {tuple(ref.shape)} does not broadcast to the input shape "
                         f"{tuple(x.shape)}; give one of shape {' or '.join(map(str, shapes))}{background}") from None


def resolve_seed(seed) -> int:
    """``seed`` as an int; ``None`` draws a fresh one from the operating system (new randomness on every call, as
    in Captum and shap), which ``explain`` records in ``info["seed"]`` so the run can be repeated exactly."""
    if seed is None:
        return int.from_bytes(os.urandom(4), "little")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (or None for fresh randomness), got {seed!r}")
    return int(seed)
