"""What a benchmark case is: the implementations that compute the same quantity, how their results are
checked, and the targets they are held to."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class Impl:
    """One library's way to compute the case's quantity.

    ``make()`` does the untimed set-up (imports, explainer objects) and returns ``run()``, the timed call.
    ``primary`` marks the attrkit row that ratios are computed from; ``timed=False`` rows run only for the check.
    """
    library: str
    label: str
    make: Callable[[], Callable[[], Any]]
    settings: dict = field(default_factory=dict)
    primary: bool = False
    timed: bool = True


@dataclass
class Check:
    """Outcome of checking one implementation's result: ``ok``, the error figure and its tolerance."""
    ok: bool
    error: float | None = None
    tolerance: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {"ok": self.ok, "error": self.error, "tolerance": self.tolerance, "detail": self.detail}


@dataclass
class Target:
    """A performance target: ``evaluate(case_result) -> (met: bool | None, value, detail)``."""
    text: str
    evaluate: Callable[[dict], tuple]


@dataclass
class Case:
    """A workload instance. ``check(outputs: label -> result) -> label -> Check`` runs before any timing."""
    id: str
    workload: str
    title: str
    model: torch.nn.Module | None
    impls: list[Impl]
    check: Callable[[dict], dict]
    targets: list[Target] = field(default_factory=list)
    repeats: int | None = None     # timed runs; 0: the checked run is the only (timed) run
    notes: list[str] = field(default_factory=list)
    prepare: Callable[[], dict] | None = None
    memory: bool = True
    unavailable: str | None = None
    extra: dict = field(default_factory=dict)
    models: list = field(default_factory=list)   # more models whose work is counted (e.g. a split head)
    finalize: Callable[[], dict] | None = None    # more figures for ``extra`` once the case has run

    def impl(self, label: str) -> Impl:
        for i in self.impls:
            if i.label == label:
                return i
        raise KeyError(f"case {self.id} has no implementation {label!r}; it has {[i.label for i in self.impls]}")

    @property
    def primary(self) -> Impl | None:
        return next((i for i in self.impls if i.primary), None)


def unavailable(id: str, workload: str, title: str, reason: str, notes=()) -> Case:
    """A case that cannot run here (method not registered yet, peer missing): reported as such."""
    return Case(id=id, workload=workload, title=title, model=None, impls=[], check=lambda outs: {},
                unavailable=reason, notes=list(notes))


def rel_error(a, b) -> float:
    """``||a - b|| / ||b||`` over all elements (float64)."""
    a = torch.as_tensor(a).detach().to(torch.float64).flatten()
    b = torch.as_tensor(b).detach().to(torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"results have different sizes: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def agree(reference_label: str, tolerance: float, values=lambda out: out) -> Callable[[dict], dict]:
    """A check: every result equals the ``reference_label`` result within relative L2 ``tolerance``."""
    def check(outs: dict) -> dict:
        ref = values(outs[reference_label])
        res = {}
        for label, out in outs.items():
            if label == reference_label:
                res[label] = Check(True, 0.0, tolerance, "reference")
                continue
            try:
                err = rel_error(values(out), ref)
            except (ValueError, RuntimeError) as e:
                res[label] = Check(False, None, tolerance, f"not comparable: {e}")
                continue
            ok = err <= tolerance and err == err
            res[label] = Check(ok, err, tolerance,
                               f"relative L2 difference to {reference_label}" + ("" if ok else " above tolerance"))
        return res
    return check


def ratio_target(text: str, numerator: str, denominator: str, limit: float, kind: str = "max",
                 field_name: str = "median_s") -> Target:
    """Target on ``row[numerator][field] / row[denominator][field]`` (<= limit for ``max``, >= for ``min``)."""
    def evaluate(result: dict):
        rows = {r["label"]: r for r in result.get("rows", [])}
        a, b = rows.get(numerator), rows.get(denominator)
        if a is None or b is None:
            return None, None, "not measured"
        failed = [r["label"] for r in (a, b) if not r["check"]["ok"]]
        if failed:
            return False, None, f"{' and '.join(failed)} failed its check"
        if a.get(field_name) is None or b.get(field_name) is None:
            return None, None, "not measured"
        value = a[field_name] / b[field_name]
        met = value <= limit if kind == "max" else value >= limit
        return met, value, f"{numerator} / {denominator} {field_name} = {value:.3g} (target {'<=' if kind == 'max' else '>='} {limit})"
    return Target(text, evaluate)
