"""Captum's calling conventions turned into ``ak.explain`` calls, and its return structure rebuilt.

Captum passes ``inputs`` as a tensor or a tuple (the result has the same structure), ``target`` as an int, a
tuple (an index into a multi-dimensional output), a tensor or a list (one per sample), ``baselines`` as
scalars, tensors or a tuple of them (one per input), ``feature_mask`` as label tensors, and
``additional_forward_args`` as any object (a non-tuple is one argument). Randomness comes from torch's (and
numpy's) global generators: ``torch.manual_seed`` before a call makes it repeatable, as in Captum.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from ...api import explain
from ...registry import MethodSpec


def as_tuple(inputs) -> tuple[tuple, bool]:
    """``(inputs as a tuple, whether the caller gave a single tensor)``."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), True
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs), False
    raise TypeError(f"inputs must be a tensor or a tuple of tensors (Captum's convention), got "
                    f"{type(inputs).__name__}")


def formatted(values, single: bool):
    """attrkit values (a tensor, or a tuple for several inputs) in the structure Captum returns."""
    if single:
        return values
    return tuple(values) if isinstance(values, (tuple, list)) else (values,)


def forward_args(additional_forward_args) -> tuple | None:
    """Captum's ``additional_forward_args``: ``None``, a tuple, or one object (wrapped in a tuple)."""
    if additional_forward_args is None:
        return None
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def torch_seed() -> int:
    """A seed for attrkit's own generators drawn from torch's global generator (so ``torch.manual_seed`` makes a
    compat call repeatable, as it makes a Captum call repeatable)."""
    return int(torch.randint(0, 2 ** 31 - 1, (1,)).item())


def per_input(value, k: int, what: str) -> list:
    """A per-input option: a tuple with one entry per input, or one value for every input."""
    if isinstance(value, (tuple, list)):
        if len(value) != k:
            raise ValueError(f"{what} has {len(value)} entries for {k} inputs; give one per input (Captum's "
                             "convention) or one value for all")
        return list(value)
    return [value] * k


def baselines_for(baselines, xs: tuple):
    """Captum ``baselines`` -> attrkit ``baseline=`` (one entry, or a tuple with one entry per input)."""
    parts = per_input(0.0 if baselines is None else baselines, len(xs), "baselines")
    out = []
    for b, x in zip(parts, xs):
        if b is None:
            b = 0.0
        if isinstance(b, numbers.Real) and not isinstance(b, bool):
            b = float(b)
        elif isinstance(b, np.ndarray):
            b = torch.from_numpy(b)
        elif not isinstance(b, torch.Tensor):
            raise TypeError(f"a baseline must be a number or a tensor (Captum's convention), got {type(b).__name__}")
        out.append(b.detach() if isinstance(b, torch.Tensor) else b)
    return out[0] if len(xs) == 1 else tuple(out)


def feature_players(feature_mask, xs: tuple):
    """Captum ``feature_mask`` -> attrkit ``players=``: ``None`` makes every scalar of every input its own
    feature (numbered on across inputs); given labels are kept, so a label used in two inputs is one feature
    (Captum 0.9's convention for every perturbation method)."""
    masks = per_input(feature_mask, len(xs), "feature_mask") if feature_mask is not None else [None] * len(xs)
    out, offset = [], 0
    for m, x in zip(masks, xs):
        if m is None:
            lab = torch.arange(math.prod(x.shape[1:])).view((1,) + tuple(x.shape[1:])) + offset
        else:
            lab = torch.as_tensor(m).long().to(x.device)
        out.append(lab)
        offset = max(offset, int(lab.max()) + 1)
    return out[0] if len(xs) == 1 else tuple(out)


class FlatOutput(nn.Module):
    """The model with its output flattened to ``[N, -1]``, so that Captum's tuple targets (an index into a
    multi-dimensional output) become attrkit's class indices."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        return out.reshape(out.shape[0], -1)


def _is_tuple_target(target) -> bool:
    if isinstance(target, tuple):
        return True
    if isinstance(target, list) and target and isinstance(target[0], tuple):
        return True
    return isinstance(target, torch.Tensor) and target.dim() == 2


def resolve_target(model, target, xs: tuple, fargs):
    """``(model, target)`` for ``ak.explain``: tuple targets index a flattened output."""
    if not _is_tuple_target(target):
        if isinstance(target, torch.Tensor) and target.dim() == 0:
            target = int(target)
        return model, target
    with torch.no_grad():
        out = model(*xs[:], *(fargs or ()))
    shape = tuple(out.shape[1:])
    n = xs[0].shape[0]
    if isinstance(target, tuple):
        rows = [target] * n
    elif isinstance(target, torch.Tensor):
        rows = [tuple(int(v) for v in r) for r in target]
    else:
        rows = list(target)
        if len(rows) != n:
            raise ValueError(f"target is a list of {len(rows)} entries for {n} samples; give one per sample")
    try:
        flat = [int(np.ravel_multi_index(tuple(int(i) for i in t), shape)) for t in rows]
    except ValueError:
        raise ValueError(f"target {target!r} does not index the model's output of shape {shape} per sample "
                         "(a tuple target gives one index per output dimension after the batch)") from None
    return FlatOutput(model), flat


def check_target(target, a) -> None:
    """Captum needs ``target=`` when the model has several outputs per sample (attrkit would take the
    predicted class); refuse instead of answering a different question."""
    out = a.outputs
    if target is None and out is not None and out.dim() == 2 and out.shape[1] > 1:
        raise ValueError(f"the model has {out.shape[1]} outputs per sample and target=None: Captum attributes one "
                         "output per sample, so give target= (an int, a tuple for a multi-dimensional output, or "
                         "one per sample); attrkit's native ak.explain(..., target=None) explains the predicted class")


def run(model, inputs, method, *, target=None, additional_forward_args=None, show_progress=False,
        batch_size=None, layer=None, seed=None, check=True, input_shaped=False, **options):
    """Call ``ak.explain`` with Captum's arguments; return ``(attribution, values in Captum's structure)``.
    ``seed``: attrkit's seed for sampled methods (callers pass :func:`torch_seed`); deterministic ones leave
    torch's generator untouched, as Captum does."""
    xs, single = as_tuple(inputs)
    xs = tuple(x.detach() for x in xs)
    fargs = forward_args(additional_forward_args)
    model, tgt = resolve_target(model, target, xs, fargs)
    x = xs[0] if len(xs) == 1 else xs
    a = explain(model, x, method, target=tgt, layer=layer, batch_size=batch_size,
                progress=bool(show_progress), seed=0 if seed is None else seed,
                forward_args=fargs, **options)
    if check:
        check_target(target, a)
    if layer is not None and not input_shaped:     # Captum returns the layer's values as they are (embeddings too)
        return a, a.info.get("embedding_values", a.values)
    return a, formatted(a.values, single)


def spec(name: str, fn, family: str = "gradient", layer: str = "optional") -> MethodSpec:
    """An unregistered recipe for ``ak.explain`` (compat-only computations keep ``ak.methods()`` unchanged)."""
    return MethodSpec(name=name, fn=fn, family=family, summary=name, layer=layer)


def rows_per_call(perturbations_per_eval: int, n: int) -> int | None:
    """Captum's ``perturbations_per_eval`` (perturbed copies of the batch per model call) as attrkit's rows per
    call; 1 (Captum's default) leaves attrkit's own chunking."""
    if isinstance(perturbations_per_eval, bool) or not isinstance(perturbations_per_eval, int) or \
            perturbations_per_eval < 1:
        raise ValueError(f"perturbations_per_eval must be a positive int, got {perturbations_per_eval!r}")
    return None if perturbations_per_eval == 1 else perturbations_per_eval * n


class Attribution:
    """Base of the compat classes: stores the model, as Captum's constructors do. After ``attribute(...)``,
    ``last_attribution`` is attrkit's result for the call: its ``info`` holds the method's error figures
    (``completeness_gap``, ``std_err``) and costs (``n_evals``, ``seconds``)."""

    def __init__(self, forward_func):
        if not callable(forward_func):
            raise TypeError(f"forward_func must be a model or a callable, got {type(forward_func).__name__}")
        self.forward_func = forward_func

    last_attribution = None     # the attrkit Attribution behind the latest attribute() call (its info)

    def _run(self, model, inputs, method, **kwargs):
        """:func:`run`, keeping the attrkit result (errors and costs in ``info``) as ``last_attribution``."""
        a, values = run(model, inputs, method, **kwargs)
        self.last_attribution = a
        return a, values

    def has_convergence_delta(self) -> bool:
        return False

    @property
    def multiplies_by_inputs(self) -> bool:
        return getattr(self, "_multiply_by_inputs", False)


def sum_per_sample(values) -> torch.Tensor:
    """Captum's delta term: each sample's attributions summed over every input."""
    parts = values if isinstance(values, (tuple, list)) else (values,)
    return sum(v.reshape(v.shape[0], -1).sum(1) for v in parts)


def path_delta(a, values, wanted: bool):
    """Captum's ``(attributions, delta)`` for path methods when ``wanted``: ``delta = sum(attr) - (f(x) - f(r))``."""
    if not wanted:
        return values
    total = sum_per_sample(values)
    return values, total - (a.info["f_x"] - a.info["f_baseline"]).to(total.dtype)


def repeat_per_sample(target, args, m: int, n: int):
    """``target`` and ``additional_forward_args`` for a batch where each of the ``n`` samples is repeated ``m``
    times in a row (per-sample lists and tensors repeated, the rest kept)."""
    if isinstance(target, (list, torch.Tensor)) and not isinstance(target, bool) and len(target) == n:
        target = [t for t in list(target) for _ in range(m)]
    fargs = forward_args(args)
    if fargs is not None:
        fargs = tuple(v.repeat_interleave(m, 0) if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n
                      else v for v in fargs)
    return target, fargs
