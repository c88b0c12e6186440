"""Half-precision models for the rule methods: computed in a float32 copy, and said so.

LRP and DeepLIFT divide by small denominators (``z + eps``, ``x - x_ref``) and carry relevances that float16
cannot hold: on a float16 model every value comes back NaN. :func:`float32_problem` gives the rule methods a
float32 copy of the model (the user's model is not touched) and inputs; :func:`with_precision_note` casts the attribution
back to the input's dtype and records the note in ``info["precision"]``.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from ..core.adapter import rows_of
from ..core.modules import call_model
from ..core.problem import Problem, Result

_HALF = (torch.float16, torch.bfloat16)


def _half_dtype(problem: Problem):
    model = problem.model
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype in _HALF:
                return t.dtype
    return problem.inputs.dtype if problem.inputs.dtype in _HALF else None


def float32_problem(problem: Problem, method: str) -> tuple[Problem, dict | None]:
    """``(problem, None)`` for float32/64 models, else ``(problem on a float32 copy, note)``."""
    dtype = _half_dtype(problem)
    if dtype is None:
        return problem, None
    if not isinstance(problem.model, nn.Module):
        raise TypeError(f"{method} needs a torch.nn.Module model")
    names = {m: n for n, m in problem.model.named_modules()}
    model = copy.deepcopy(problem.model).float()
    layer = None
    if problem.layer is not None:
        layer = dict(model.named_modules())[names[problem.layer]]
    x = problem.inputs.float() if problem.inputs.is_floating_point() else problem.inputs
    with torch.no_grad(), rows_of(model, torch.arange(x.shape[0])):
        out = call_model(model, x)
    new = replace(problem, model=model, inputs=x, outputs=out, layer=layer, _chunk={})
    note = {"dtype": problem.inputs.dtype,
            "text": f"{method} computed in a float32 copy of the {str(dtype).replace('torch.', '')} model (its "
                    "rules divide by small denominators that half precision cannot hold); values cast back to "
                    f"{str(problem.inputs.dtype).replace('torch.', '')}"}
    return new, note


def with_precision_note(result: Result, note: dict | None) -> Result:
    if note is None:
        return result
    result.values = result.values.to(note["dtype"]) if note["dtype"].is_floating_point else result.values
    result.info["precision"] = note["text"]
    return result
