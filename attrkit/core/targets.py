"""The one place where ``target=`` becomes a callable.

Every method downstream sees a :class:`Target`: ``target(outputs, rows) -> [B]`` gives one scalar per
row of a batch of model outputs, where ``rows`` says which original sample each row belongs to (methods
evaluate many points per sample, so a batch mixes samples).
"""
from __future__ import annotations

import numbers
from typing import Callable, Sequence

import numpy as np
import torch


class Target:
    """A resolved target.

    ``classes`` is a ``[N]`` long tensor when the target picks an output index per sample, ``None``
    when it is a user callable (segmentation masks, detections, multi-label sums) or the model has a
    single output per sample.
    """

    def __init__(self, classes: torch.Tensor | None, fn: Callable | None, label: str):
        self.classes = classes
        self._fn = fn
        self.label = label

    def __call__(self, outputs: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if self._fn is not None:
            value = self._fn(outputs)
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.shape[0] != outputs.shape[0]:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"target callable must return one scalar per sample (shape [{outputs.shape[0]}]), got {shape}")
            return value
        if outputs.dim() == 1:
            return outputs
        if self.classes is None:  # single-output model viewed as [B, 1]
            return outputs.reshape(outputs.shape[0], -1)[:, 0]
        cls = self.classes.to(outputs.device)
        cls = cls if rows is None else cls[rows.to(outputs.device)]
        return outputs.gather(1, cls.view(-1, 1)).squeeze(1)

    def subset(self, rows: torch.Tensor) -> "Target":
        """The target restricted to samples ``rows`` (renumbered 0..len(rows)-1)."""
        classes = None if self.classes is None else self.classes[rows.to(self.classes.device)]
        return Target(classes, self._fn, self.label)

    def repeat_interleave(self, k: int) -> "Target":
        """The target for a batch where every sample is repeated ``k`` times in a row."""
        classes = None if self.classes is None else self.classes.repeat_interleave(k)
        return Target(classes, self._fn, self.label)

    @property
    def is_callable(self) -> bool:
        return self._fn is not None

    def __repr__(self) -> str:
        return f"Target({self.label})"


def resolve_target(target, outputs: torch.Tensor) -> Target:
    """Turn ``target`` (int | sequence | tensor | None | callable) into a :class:`Target`.

    ``outputs`` are the model's outputs on the inputs, ``[N]`` or ``[N, C]`` (``[N, ...]`` needs a callable).
    ``None`` means the predicted class (argmax), or output 0 for a single-output model.
    """
    n = outputs.shape[0]
    if callable(target) and not isinstance(target, torch.Tensor):
        name = getattr(target, "__name__", type(target).__name__)
        t = Target(None, target, f"callable:{name}")
        t(outputs)  # validate the shape once, on the real outputs
        return t
    if outputs.dim() > 2:
        raise ValueError(
            f"the model returns outputs of shape {tuple(outputs.shape)} (more than one value per class); "
            "pass target= as a callable that maps the output batch to one scalar per sample, "
            "e.g. target=lambda out: out[:, 3].sum(dim=(1, 2)) for class 3 of a segmentation mask")
    n_out = 1 if outputs.dim() == 1 else outputs.shape[1]
    if target is None:
        if n_out == 1:
            return Target(None, None, "output 0")
        return Target(outputs.argmax(dim=1).long().cpu(), None, "predicted class")
    if isinstance(target, (bool, np.bool_)):
        raise TypeError("target must be an int, a sequence of ints, a tensor, None or a callable, not a bool")
    if isinstance(target, numbers.Integral):       # int, numpy integers
        target = int(target)
        classes = torch.full((n,), target, dtype=torch.long)
        label = f"class {target}"
    elif isinstance(target, (torch.Tensor, np.ndarray, Sequence)) and not isinstance(target, str):
        try:
            classes = torch.as_tensor(np.asarray(target) if isinstance(target, np.ndarray) else target).cpu()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError("target must be an int or one class index per sample (a flat list, array or tensor); "
                            f"could not read {type(target).__name__} {target!r} as integers") from None
        if classes.dtype == torch.bool:
            raise TypeError("target is a bool tensor/array: a mask is not a list of classes (True/False would be "
                            "read as classes 1/0); give class indices, e.g. mask.long() or mask.nonzero()")
        if classes.is_floating_point() or classes.is_complex():
            raise TypeError(f"target must hold integer class indices, got dtype {classes.dtype}")
        if classes.dim() > 1:
            raise ValueError(f"target has shape {tuple(classes.shape)}: give one class index per sample as a flat "
                             f"sequence or 1-D tensor of length {n} (or a single int), not a nested one; for "
                             "several classes per sample pass a callable target, e.g. lambda out: out[:, [1, 3]].sum(1)")
        classes = classes.long().reshape(-1)
        if classes.numel() == 1:
            classes = classes.repeat(n)
        if classes.numel() != n:
            raise ValueError(f"target has {classes.numel()} entries but the batch has {n} samples; "
                             "give one class per sample or a single int")
        label = "per-sample classes"
    else:
        raise TypeError(f"target must be an int, a sequence of ints, a tensor, None or a callable, "
                        f"not {type(target).__name__}")
    bad = (classes < 0) | (classes >= n_out)
    if bad.any():
        raise ValueError(f"target {classes[bad][0].item()} is out of range: the model has {n_out} output"
                         f"{'s' if n_out != 1 else ''} (valid targets 0..{n_out - 1})")
    if n_out == 1:
        return Target(None, None, "output 0")
    return Target(classes, None, label)
