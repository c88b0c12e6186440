"""Scores per method: the metric registry behind :func:`evaluate_methods` and ``attrkit evaluate --metrics``.

A metric is a function of one :class:`Scoring` (the model, the inputs, the attribution and how it was made)
that returns a number, or a dict of columns; :func:`register_metric` files it under a name. The built-in ones
call :mod:`attrkit.metrics`; ``needs_masks=True`` ones (localisation) give NaN on data without object masks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .common import one_bar
from .presets import PRESETS


@dataclass(frozen=True)
class Scoring:
    """What a metric sees: ``attribution`` of ``method`` (run with ``options``, its layer included) on ``x``."""
    model: Callable
    x: torch.Tensor
    attribution: object
    method: str
    options: dict = field(default_factory=dict)
    masks: torch.Tensor | None = None
    steps: int = 20
    seed: int = 0
    batch_size: int | None = None
    progress: bool | None = None


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Scoring], float | dict]
    needs_masks: bool = False


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, needs_masks: bool = False):
    """Decorator: file ``fn(scoring) -> float | dict`` under ``name`` (a float is the column ``name``; a dict
    gives its own columns). ``needs_masks``: the metric reads ``scoring.masks`` (NaN without them)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a metric name must be an identifier (it becomes a table column), got {name!r}")
    if name in METRICS:
        raise ValueError(f"a metric named {name!r} is already registered; pick another name")

    def add(fn):
        if not callable(fn):
            raise TypeError(f"register_metric({name!r}) decorates a function of one Scoring, got {fn!r}")
        METRICS[name] = Metric(name, fn, needs_masks)
        return fn
    return add


def unregister_metric(name: str) -> Metric:
    """Remove metric ``name`` from the registry and return it (for examples and tests that add throwaway ones)."""
    if name not in METRICS:
        raise ValueError(f"metric {name!r} is not registered")
    return METRICS.pop(name)


def _metrics():
    from .. import metrics
    return metrics


def _curve(name: str):
    def score(s: Scoring) -> float:
        return getattr(_metrics(), name)(s.model, s.x, s.attribution, steps=s.steps, seed=s.seed,
                                         batch_size=s.batch_size, progress=s.progress).score
    return score


def _perturbation(name: str):
    def score(s: Scoring) -> float:
        return getattr(_metrics(), name)(s.model, s.x, s.attribution, seed=s.seed, batch_size=s.batch_size,
                                         progress=s.progress).score
    return score


def _localisation(name: str):
    def score(s: Scoring) -> float:
        return getattr(_metrics(), name)(s.attribution, s.masks).score
    return score


def _max_sensitivity(s: Scoring) -> float:
    return _metrics().max_sensitivity(s.model, s.x, s.method, seed=s.seed, batch_size=s.batch_size,
                                      **s.options).score


def _completeness(s: Scoring) -> dict:
    gap = _metrics().completeness(s.model, s.x, s.attribution).details["relative_gap"]
    return {"completeness_gap": float(np.mean(gap))}


def _sanity(s: Scoring) -> dict:
    """Spearman |map| vs the original after randomising the top half of the layers (cascading)."""
    r = _metrics().cascading_randomisation(s.model, s.x, s.method, seed=s.seed, batch_size=s.batch_size,
                                           keep_maps=False, **s.options)
    half = max(1, len(r.layers) // 2)
    return {"sanity_rho_half": r.rows()[half - 1]["spearman_abs"]}


for _name in ("deletion", "insertion", "morf_lerf"):
    register_metric(_name)(_curve(_name))
for _name in ("faithfulness_correlation", "infidelity"):
    register_metric(_name)(_perturbation(_name))
register_metric("max_sensitivity")(_max_sensitivity)
register_metric("completeness")(_completeness)
for _name in ("pointing_game", "relevance_mass", "relevance_rank", "mask_auc"):
    register_metric(_name, needs_masks=True)(_localisation(_name))
register_metric("sanity")(_sanity)


@one_bar
def evaluate_methods(model, data, methods, metrics, *, layer=None, steps: int = 20, seed: int = 0,
                     batch_size: int | None = None, progress: bool | None = None) -> list[dict]:
    """One row per method: ``method``, ``layer``, ``seconds`` and the mean of each metric of :data:`METRICS`
    named in ``metrics`` on ``data`` (``.x``, ``.masks``; used by ``attrkit evaluate``)."""
    from ..api import explain
    from ..registry import get
    unknown = [k for k in metrics if k not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)} "
                         "(or add one with attrkit.experiments.register_metric)")
    x, masks = data.x, data.masks
    if masks is not None and masks.dim() == 4 and masks.shape[1] != 1:
        masks = None                                            # per-class masks: not one object per image
    rows = []
    for m in methods:
        spec = get(m)
        kw = dict(PRESETS.get(m, {}))
        lay = layer if layer is not None and spec.layer != "never" else None
        if lay is not None:
            kw["layer"] = lay
        t0 = time.perf_counter()
        a = explain(model, x, method=m, batch_size=batch_size, progress=progress, seed=seed, **kw)
        row = {"method": a.method, "layer": a.layer, "seconds": time.perf_counter() - t0}
        scoring = Scoring(model, x, a, m, kw, masks, steps, seed, batch_size, progress)
        for k in metrics:
            metric = METRICS[k]
            if metric.needs_masks and masks is None:
                row[k] = float("nan")
                continue
            value = metric.fn(scoring)
            row.update(value if isinstance(value, dict) else {k: value})
        rows.append(row)
    return rows
