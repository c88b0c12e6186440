"""Input validation: clear errors instead of silent wrong answers."""
from __future__ import annotations

import numbers
import os

import torch


def as_batch(x, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a batch ``[N, ...]`` with finite values (floating point, or integer ids/codes)."""
    if not isinstance(x, torch.Tensor):
        try:
            import numpy as np
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(x)
        except ImportError:  # pragma: no cover
            pass
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


_SHAPED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Bilinear,
           torch.nn.Embedding, torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)


def _expects(module) -> str:
    """What input a layer takes, in words (``""`` when it is not a layer with a fixed input size)."""
    if isinstance(module, torch.nn.Linear):
        return f"inputs [..., {module.in_features}] (in_features={module.in_features})"
    for k, cls in ((1, torch.nn.Conv1d), (2, torch.nn.Conv2d), (3, torch.nn.Conv3d)):
        if isinstance(module, cls):
            dims = ", ".join(("L",) if k == 1 else ("H", "W") if k == 2 else ("D", "H", "W"))
            return f"inputs [N, {module.in_channels}, {dims}] (in_channels={module.in_channels})"
    if isinstance(module, (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)):
        return f"inputs [..., {module.input_size}] (input_size={module.input_size})"
    return ""


class first_call:
    """Give the model's first call on the user's batch attrkit context when it fails: a torch shape error
    (``mat1 and mat2 shapes cannot be multiplied``) becomes a ``ValueError`` naming the input shape given, the
    layer that failed and what that layer expects (the model's first layer when that cannot be told)."""

    def __init__(self, model, x: torch.Tensor):
        self.model, self.x = model, x
        self.entered: list = []          # (name, module, finished) of the leaf layers run, in order
        self._handles: list = []

    def __enter__(self):
        m = self.model
        if isinstance(m, torch.nn.Module) and not isinstance(m, torch.jit.ScriptModule):
            for name, mod in m.named_modules():
                if len(list(mod.children())) == 0:
                    self._handles.append(mod.register_forward_pre_hook(
                        lambda mod, args, name=name: self.entered.append([name, mod, False])))
                    self._handles.append(mod.register_forward_hook(self._finished))
        return self

    def _finished(self, mod, args, out):
        if self.entered and self.entered[-1][1] is mod:
            self.entered[-1][2] = True

    def __exit__(self, kind, err, tb):
        for h in self._handles:
            h.remove()
        if err is None or not isinstance(err, (RuntimeError, IndexError)):
            return False
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = ""
        if self.entered:
            name, mod, finished = self.entered[-1]
            what = _expects(mod)
            where = f" at layer {name!r} ({type(mod).__name__}{', which takes ' + what if what else ''})" \
                if not finished else f" after layer {name!r} ({type(mod).__name__}) had run, in the model's own code"
        elif isinstance(self.model, torch.nn.Module):
            first = next(((n, m) for n, m in self.model.named_modules() if isinstance(m, _SHAPED)), None)
            if first is not None and _expects(first[1]):
                where = f"; its first layer {first[0]!r} ({type(first[1]).__name__}) takes {_expects(first[1])}"
        model_name = type(self.model).__name__
        raise ValueError(f"the model ({model_name}) failed on the input batch {_describe(self.x)}{where}: {detail}. "
                         "Check that x has the shape the model expects, with the batch dimension first (e.g. "
                         "[N, C, H, W] for images, [N, F] for tables)") from err


def _describe(x) -> str:
    """``of shape (2, 5) (dtype float32)``; for several inputs each one's shape."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in x) + ")"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"of shape {tuple(x.shape)} (dtype {str(x.dtype).replace('torch.', '')})"
    return type(x).__name__
