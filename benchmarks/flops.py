"""Count the work a run does: model evaluations and multiply-accumulates, by forward hooks.

Hooks on every ``Conv*d`` and ``Linear`` module add the MACs of each call (``output elements x
in_channels/groups x kernel size`` for a convolution, ``rows x in x out`` for a linear layer). A call
made while autograd records, whose input requires grad, is counted once more for its input-gradient
backward pass (the same MACs; no weight gradients are needed for attributions). 1 MAC = 2 FLOP;
pooling, ReLU and element-wise work are not counted, so rates are slight underestimates.
*Evaluations* are rows through the network's output layer (its last Conv/Linear module), so a library that
evaluates only the part of a network after a layer is counted the same way as a full forward pass.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return int(out.numel() // module.out_features) * module.in_features * module.out_features
    k = math.prod(module.kernel_size) * (module.in_channels // module.groups)
    return int(out.numel()) * k


class WorkCounter:
    """Context manager counting forward/backward MACs and output-layer rows on ``model``."""

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError("WorkCounter needs an nn.Module")
        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, COUNTED)]
        if not self.layers:
            raise ValueError("the model has no Conv/Linear layer to count")
        self.output_layer = self.layers[-1]
        self.reset()
        self._handles = []

    def reset(self) -> None:
        self.forward_macs = 0
        self.backward_macs = 0
        self.evals = 0
        self.grad_evals = 0

    def _hook(self, module, args, out):
        if not isinstance(out, torch.Tensor):
            return
        macs = _macs(module, out)
        self.forward_macs += macs
        recording = torch.is_grad_enabled() and out.requires_grad
        inp = args[0] if args else None
        if recording and isinstance(inp, torch.Tensor) and inp.requires_grad:
            self.backward_macs += macs
        if module is self.output_layer:
            rows = int(out.shape[0]) if out.dim() > 1 else 1
            self.evals += rows
            if recording:
                self.grad_evals += rows

    def __enter__(self) -> "WorkCounter":
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def flops(self) -> int:
        return 2 * (self.forward_macs + self.backward_macs)

    def as_dict(self) -> dict:
        return {"evals": self.evals, "grad_evals": self.grad_evals, "forward_macs": self.forward_macs,
                "backward_macs": self.backward_macs, "flops": self.flops}


def forward_flops(model: nn.Module, row: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on a single row ``[1, ...]`` (Conv/Linear only)."""
    with torch.no_grad(), WorkCounter(model) as wc:
        model(row)
    return wc.flops


@contextlib.contextmanager
def counting(models):
    """Count work on several models at once; yields the list of counters."""
    counters = [WorkCounter(m) for m in models]
    with contextlib.ExitStack() as stack:
        for c in counters:
            stack.enter_context(c)
        yield counters
