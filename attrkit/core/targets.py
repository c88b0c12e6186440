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
        self._on: dict = {}        # device -> (classes, their copy there): one copy, not one per batch

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
        dev = outputs.device
        src, cls = self.__dict__.setdefault("_on", {}).get(dev, (None, None))
        if src is not self.classes:          # first use on this device (or classes replaced): one copy
            cls = self.classes.to(dev)
            self._on[dev] = (self.classes, cls)
        cls = cls if rows is None else cls[rows.to(dev)]
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


# ------------------------------------------------------------------------------------- structured outputs
class OutputSelector:
    """Picks one tensor from a structured model output: ``key`` is a field name (dicts, dataclasses, Hugging
    Face ``ModelOutput``s) or a position (tuples, lists; the n-th field of the others); or ``fn`` is the user's
    callable target applied to the raw output (one scalar per sample, e.g. a detection score)."""

    def __init__(self, key=None, fn: Callable | None = None):
        self.key, self.fn = key, fn
        self.label = f"callable:{getattr(fn, '__name__', type(fn).__name__)}" if fn is not None else \
            f"output[{key!r}]"

    def __call__(self, out):
        if self.fn is not None:
            return self.fn(out)
        return pick_output(out, self.key)


def _fields(out) -> list[tuple]:
    """``[(name, value)]`` of a structured output in order (None fields skipped, as ModelOutput does)."""
    import dataclasses
    from collections.abc import Mapping
    if isinstance(out, Mapping):
        return [(k, v) for k, v in out.items() if v is not None]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out) if getattr(out, f.name) is not None]
    if isinstance(out, (tuple, list)):
        names = getattr(out, "_fields", None)   # namedtuple
        return [(names[i] if names else i, v) for i, v in enumerate(out)]
    return []


def describe_output(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor {list(out.shape)}"
    fields = _fields(out)
    if not fields:
        return f"a {type(out).__name__}"
    show = lambda v: f"tensor {list(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
    inner = ", ".join(f"{k!r}: {show(v)}" for k, v in fields[:8]) + (" ..." if len(fields) > 8 else "")
    return f"a {type(out).__name__} of {len(fields)} ({inner})"


def pick_output(out, key):
    """The field ``key`` (name or position) of a structured output."""
    fields = _fields(out)
    if isinstance(key, str):
        for k, v in fields:
            if k == key:
                return v
        if hasattr(out, key) and not isinstance(out, (tuple, list)):
            return getattr(out, key)
    elif isinstance(key, int) and not isinstance(key, bool) and -len(fields) <= key < len(fields):
        return fields[key][1]
    names = [k for k, _ in fields]
    raise ValueError(f"the model's output has no field {key!r}: it is {describe_output(out)}; choose one of "
                     f"{names} with target=(field, class)")


def _is_selection(target) -> bool:
    return isinstance(target, tuple) and len(target) == 2 and not isinstance(target[0], bool) and \
        isinstance(target[0], (str, int))


def resolve_output(target, raw, n: int):
    """For a model whose output is not one tensor: ``(selector, class target)``.

    ``target=("logits", 3)`` / ``(0, 3)`` / ``"logits"`` select a field (then the class, per-sample classes or
    None = predicted class, as for tensors); a callable target gets the raw output and its per-sample scalars
    become the output; without a selector a structure holding exactly one tensor, or a ``logits`` field, is
    used, otherwise the error says how to choose. A tensor output returns ``(None, target)`` unchanged.
    """
    if isinstance(raw, torch.Tensor):
        return None, target
    if callable(target) and not isinstance(target, torch.Tensor):
        sel = OutputSelector(fn=target)
        _check_selected(sel(raw), raw, n, sel)
        return sel, None
    if isinstance(target, str):
        key, rest = target, None
    elif _is_selection(target):
        key, rest = target
    elif target is None or isinstance(target, (int, torch.Tensor, list)) or \
            (isinstance(target, tuple) and not _is_selection(target)):
        fields = _fields(raw)
        tensors = [k for k, v in fields if isinstance(v, torch.Tensor)]
        if "logits" in tensors:
            key = "logits"
        elif len(tensors) == 1:
            key = tensors[0]
        else:
            raise ValueError(
                f"the model returns {describe_output(raw)}; say which output to explain: target=(field, class), "
                "e.g. target=('logits', 3) or target=(0, 3) for the first element of a tuple, or a callable "
                "target=lambda out: ... returning one scalar per sample (e.g. a detection score)")
        rest = target
    else:
        raise TypeError(f"target must be an int, a sequence of ints, a tensor, None, a callable or (field, class) "
                        f"for a structured output, not {type(target).__name__}")
    sel = OutputSelector(key=key)
    _check_selected(sel(raw), raw, n, sel)
    return sel, rest


def _check_selected(value, raw, n: int, sel: OutputSelector) -> None:
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != n:
        got = f"shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        what = "the target callable" if sel.fn is not None else f"output field {sel.key!r}"
        raise ValueError(f"{what} gives {got} for a batch of {n}; it must give one row per sample "
                         f"([{n}] scalars or [{n}, classes]). The model returns {describe_output(raw)}")
