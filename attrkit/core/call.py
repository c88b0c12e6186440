"""``prepare``: one model call made ready for the engines — inputs validated and packed, non-attributed
arguments attached, the output selected, the target resolved. ``ak.explain``, ``Game`` and the metrics share it.

The engines then see a single-tensor model (the user's model itself when it takes one tensor and returns one
tensor, otherwise a :class:`~attrkit.core.adapter.ModelAdapter`) on a single tensor ``inputs`` (the flat pack of
several inputs, see :mod:`attrkit.core.inputs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .adapter import ModelAdapter, rows_of
from .checks import check_finite
from .inputs import Layout, check_forward_args, is_multi, make_layout
from .modules import call_model, inputs_for, model_device_dtype
from .targets import Target, resolve_output, resolve_target


@dataclass
class Prepared:
    model: Any                   # what the engines call: the user's model or an adapter around it
    inputs: torch.Tensor         # [N, ...] (one input) or [N, D] (several, packed)
    outputs: torch.Tensor        # the selected output on the inputs, [N] or [N, classes]
    target: Target
    layout: Layout | None        # several inputs: how they are packed
    structured: Any              # the inputs in the user's structure (tensor, tuple or dict), validated
    class_target: Any = None     # the class part of target= once the output is selected (e.g. 3 of ("logits", 3))

    @property
    def n(self) -> int:
        return int(self.inputs.shape[0])


def prepare(model, x, target=None, forward_args=None, forward_kwargs=None, batch_size: int | None = None,
            check_outputs: bool = True) -> Prepared:
    """Validate ``model``/``x`` and run the model once on ``x`` (in chunks); see the module docstring."""
    if not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable, got {type(model).__name__}")
    fargs, fkwargs = check_forward_args(forward_args, forward_kwargs)
    device, dtype = model_device_dtype(model)
    if is_multi(x):
        layout, flat, structured = make_layout(x, device, dtype)
    else:
        layout, flat = None, inputs_for(model, x)
        structured = flat
    n = int(flat.shape[0])
    _warn_unchunked(fargs, fkwargs, n)
    if device is not None:
        fargs = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in fargs)
        fkwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fkwargs.items()}
    if layout is not None and layout.kind == "dict":
        clash = sorted(set(layout.names) & set(fkwargs))
        if clash:
            raise ValueError(f"{clash} are given both as inputs (x) and in forward_kwargs; give each once")
    engine = ModelAdapter(model, layout, n, fargs, fkwargs) if (layout is not None or fargs or fkwargs) else model
    step = batch_size if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0 else 256
    outs, rest = [], target
    for s in range(0, n, step):
        chunk = flat[s:s + step]
        with rows_of(engine, torch.arange(s, s + chunk.shape[0])):
            if s == 0:
                raw = engine(chunk)
                if not isinstance(raw, torch.Tensor):
                    select, rest = resolve_output(target, raw, chunk.shape[0])
                    if not isinstance(engine, ModelAdapter):
                        engine = ModelAdapter(model, None, n)
                    engine.select = select
                    out = select(raw)
                else:
                    out = raw
                outs.append(_checked(out, chunk.shape[0]))
            else:
                outs.append(call_model(engine, chunk))
    outputs = torch.cat(outs)
    if check_outputs and outputs.is_floating_point():
        check_finite(outputs, "the model's output")
    tgt = resolve_target(rest, outputs)
    select = getattr(engine, "select", None)
    if select is not None and select.fn is not None:
        tgt.label = select.label
    elif select is not None:
        tgt.label = f"{select.key!r}: {tgt.label}"
    return Prepared(engine, flat, outputs, tgt, layout, structured, rest)


def first_prepare(model, x, target=None, forward_args=None, forward_kwargs=None,
                  batch_size: int | None = None, context=None) -> Prepared:
    """:func:`prepare` as the call's first model call (without gradients, or under ``context``, a method's own
    pass): when the model fails, the error names the input shapes given, the failing layer and what it expects
    (:class:`first_call`), or says that integer inputs are passed as they are
    (:func:`attrkit.core.tokens.forward_error`)."""
    from .tokens import forward_error
    with first_call(model, x):
        try:
            with context if context is not None else torch.no_grad():
                return prepare(model, x, target, forward_args, forward_kwargs, batch_size)
        except RuntimeError as e:
            raise forward_error(e, x) from e


def _warn_unchunked(fargs: tuple, fkwargs: dict, n: int) -> None:
    """Only tensors travel with their samples; a list/tuple/array of N items is passed whole to every call."""
    import warnings
    named = [(f"forward_args[{i}]", a) for i, a in enumerate(fargs)] + [(f"forward_kwargs[{k!r}]", v)
                                                                       for k, v in fkwargs.items()]
    for name, v in named:
        if n > 1 and (isinstance(v, (list, tuple)) or type(v).__name__ == "ndarray") and len(v) == n:
            warnings.warn(f"{name} is a {type(v).__name__} of {n} items, one per sample? Only tensors whose first "
                          "dimension is N are chunked and repeated with their samples; this one is passed whole "
                          "to every model call. Pass a tensor if it holds one entry per sample", stacklevel=4)


def _checked(out, n: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a torch.Tensor, got {type(out).__name__}")
    if out.dim() == 0 or out.shape[0] != n:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for a batch of {n}; it must map "
                         "a batch [N, ...] to [N, outputs] or [N]")
    return out


# ------------------------------------------------------------------------------------ the first call's errors
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


# ------------------------------------------------------------------------------------------------ metrics
def several_inputs(fn):
    """Let a metric ``fn(model, x, attribution | method, target, ...)`` written for one tensor take several
    inputs (a tuple/dict ``x``, an Attribution of several inputs), constant ``forward_args``/``forward_kwargs``
    and structured outputs (``target=("logits", 3)``): the metric runs on the adapter and the flat pack, so a
    perturbation removes elements of any input (tables count as features, images as elements: the flat pack
    has no spatial dimensions). Per-input options are not unpacked here: compute the Attribution with
    ``ak.explain`` first and pass it."""
    import functools
    import inspect

    from ..attribution import Attribution
    params = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(model, x, *args, **kwargs):
        fargs, fkwargs = kwargs.pop("forward_args", None), kwargs.pop("forward_kwargs", None)
        if not is_multi(x) and fargs is None and fkwargs is None and not _structured_output(model, x):
            return fn(model, x, *args, **kwargs)
        bound = dict(zip(params[2:], args))
        bound.update(kwargs)
        with torch.no_grad():
            prep = prepare(model, x, bound.get("target"), fargs, fkwargs)
        if "target" in bound:
            bound["target"] = prep.class_target
        for key in ("attribution", "method"):
            if isinstance(bound.get(key), Attribution) and prep.layout is not None:
                bound[key] = _flat_attribution(bound[key], prep)
            elif isinstance(bound.get(key), (tuple, dict)) and prep.layout is not None:
                bound[key] = prep.layout.pack(bound[key])
        if isinstance(prep.model, ModelAdapter) and prep.model.per_sample_args and prep.n > 1:
            return _sample_by_sample(fn, prep, bound)
        return fn(prep.model, prep.inputs, **bound)
    return wrapper


# metrics whose score is the worst sample (axiom checks); the others average their samples
_NOT_PER_SAMPLE = {"model_randomisation", "cascading_randomisation", "independent_randomisation", "find_dummies",
                   "find_symmetric_pairs"}
_WORST = {"completeness", "sensitivity", "dummy", "symmetry", "linearity", "implementation_invariance"}


def _sample_by_sample(fn, prep: Prepared, bound: dict):
    """A metric under forward arguments with one row per sample (an attention mask ``[N, L]``): every model call
    of the metric builds its own perturbed batch, so the metric runs once per sample, on that sample's own
    arguments, and the per-sample results are joined (scores: the worst sample for axiom checks, else the mean)."""
    import numpy as np

    from ..attribution import Attribution
    from ..metrics._common import MetricResult
    if fn.__name__ in _NOT_PER_SAMPLE:
        raise ValueError(f"{fn.__name__} does not take forward arguments with one row per sample (e.g. an "
                         "attention mask [N, L]); bake them into the model (a small nn.Module holding them) or "
                         "pass arguments shared by all samples")
    n, results = prep.n, []
    for i in range(n):
        one = {}
        for key, v in bound.items():
            if isinstance(v, Attribution) and len(v) == n:
                v = v.select(i)
            elif isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
                v = v[i:i + 1]
            elif isinstance(v, (list, tuple)) and key == "target" and len(v) == n:
                v = [v[i]]
            one[key] = v
        r = fn(prep.model.reindexed(torch.tensor([i])), prep.inputs[i:i + 1], **one)
        if type(r) is not MetricResult:
            raise TypeError(f"attrkit internal error: {fn.__name__} returned {type(r).__name__}, not a MetricResult")
        results.append(r)
    per = np.concatenate([np.asarray(r.per_sample).reshape(-1) for r in results])
    passed = None if results[0].passed is None else np.concatenate([np.asarray(r.passed).reshape(-1)
                                                                   for r in results])
    if results[0].name in _WORST:
        score = float(np.max(per))
    else:
        score = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
    details = {}
    for key, v in results[0].details.items():
        vs = [r.details.get(key) for r in results]
        if key == "n_evals":
            details[key] = int(sum(vs))
        elif isinstance(v, np.ndarray) and v.ndim > 0 and v.shape[0] == 1 and all(
                isinstance(u, np.ndarray) and u.shape == v.shape for u in vs):
            details[key] = np.concatenate(vs)
        elif all(_same(u, v) for u in vs):
            details[key] = v
        else:
            details[key] = vs
    details["sample_by_sample"] = True
    return MetricResult(results[0].name, score, per, passed, details)


def _same(a, b) -> bool:
    try:
        import numpy as np
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:
        return a is b


def _structured_output(model, x) -> bool:
    if not isinstance(x, torch.Tensor) or not callable(model) or x.dim() < 1 or x.shape[0] == 0:
        return False
    from .modules import eval_mode
    try:
        with torch.no_grad(), eval_mode(model, warn=False):
            out = model(inputs_for(model, x[:1]))
    except Exception:          # let the metric report its own error
        return False
    return not isinstance(out, torch.Tensor)


def _flat_attribution(a, prep: Prepared):
    from ..attribution import Attribution
    layout = prep.layout
    values = layout.pack(a.values) if a.multi else a.values
    players = a.players
    if isinstance(players, (tuple, list, dict)):
        from ..games.packing import pack_players
        players = pack_players(players, layout, prep.inputs)
    info = {k: layout.pack(v) if isinstance(v, (tuple, dict)) and all(isinstance(u, torch.Tensor) for u in
            (v.values() if isinstance(v, dict) else v)) and len(v) == len(layout) else v for k, v in a.info.items()}
    baseline = a.baseline
    if isinstance(baseline, (tuple, dict)):
        baseline = layout.pack(baseline)
    return Attribution(values=values, method=a.method, target=a.target, layer=a.layer, baseline=baseline,
                       inputs=prep.inputs, outputs=a.outputs, info=info, players=players)
