"""What every metric shares: the result type, turning "an attribution or how to compute one" into values,
scoring perturbed inputs in chunks, and the units (features, pixels or players) that are removed together."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..attribution import Attribution
from ..core.budget import rows_per_chunk
from ..core.problem import in_chunks
from ..core.modules import call_model, eval_mode, inputs_for
from ..core.targets import resolve_target


# ---------------------------------------------------------------------------------------------- result
@dataclass
class MetricResult:
    """One metric on a batch: the aggregate ``score``, the ``per_sample`` values behind it and, for axiom
    checks, ``passed`` per sample. ``details`` holds curves, settings and any further per-sample arrays.

    ``float(result)`` is the score; ``result.to_dict()`` a flat summary for tables.
    """
    name: str
    score: float
    per_sample: np.ndarray
    passed: np.ndarray | None = None
    details: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.score)

    @property
    def all_passed(self) -> bool | None:
        """True when every sample passed (axiom checks); None for metrics without a pass criterion."""
        return None if self.passed is None else bool(np.all(self.passed))

    @property
    def pass_rate(self) -> float | None:
        return None if self.passed is None else float(np.mean(self.passed))

    def to_dict(self) -> dict:
        out = {"metric": self.name, "score": float(self.score), "n": int(len(self.per_sample))}
        if self.passed is not None:
            out["pass_rate"] = self.pass_rate
        for k, v in self.details.items():
            if isinstance(v, (int, float, str, bool, np.floating, np.integer)) or v is None:
                out[k] = v.item() if isinstance(v, (np.floating, np.integer)) else v
        return out

    def __repr__(self) -> str:
        extra = f", pass_rate={self.pass_rate:.3f}" if self.passed is not None else ""
        return f"MetricResult({self.name}: score={self.score:.4g}, n={len(self.per_sample)}{extra})"


def nanmean(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def to_np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


# --------------------------------------------------------------------------------------------- progress
def progress_bar(iterable, total: int | None, desc: str, progress: bool | None):
    """``iterable``, stepping the metric's one progress bar (``attrkit.progress``: None = on a terminal after
    2 s); the ``explain`` calls made inside the loop join that bar instead of starting bars of their own."""
    from ..progress import bar, call_bar
    with call_bar(progress, desc, unit="step"):
        b = bar(total or 0, desc, progress, unit="step")
        for item in iterable:
            yield item
            b.update(1)


# --------------------------------------------------------------------------------------- attributions
check_inputs = inputs_for   # the one place that validates a model and its batch


def explain_values(model, x, method, target, options: dict) -> torch.Tensor:
    """Values of ``method`` (a registered name or a callable ``fn(model, x, target) -> Attribution |
    Tensor``) on ``x`` for ``target``."""
    if isinstance(method, str):
        from ..api import explain
        return explain(model, x, method=method, target=target, **options).values
    if callable(method):
        out = method(model, x, target, **options) if options else method(model, x, target)
        out = out.values if isinstance(out, Attribution) else out
        if not isinstance(out, torch.Tensor):
            raise TypeError("an explainer callable must return an Attribution or a tensor of values")
        return out
    raise TypeError(f"method must be a registered method name or a callable fn(model, x, target), "
                    f"got {type(method).__name__}")


def resolve_attribution(model, x: torch.Tensor, attribution, target=None, options: dict | None = None
                        ) -> Attribution:
    """An :class:`Attribution` for ``x``: given as one, as a values tensor, or as a method name / callable
    that is run now with ``options``."""
    options = options or {}
    if isinstance(attribution, Attribution):
        if attribution.values.shape[0] != x.shape[0]:
            raise ValueError(f"the attribution holds {attribution.values.shape[0]} samples but x has "
                             f"{x.shape[0]}; pass the inputs it was computed for")
        return attribution
    if isinstance(attribution, np.ndarray):
        attribution = torch.from_numpy(attribution)
    if isinstance(attribution, torch.Tensor):
        if attribution.shape[0] != x.shape[0]:
            raise ValueError(f"attribution values have {attribution.shape[0]} rows but x has {x.shape[0]}")
        return Attribution(values=attribution.detach().to(x.device), method="given", target=target, inputs=x)
    if isinstance(attribution, str):
        from ..api import explain
        return explain(model, x, method=attribution, target=target, **options)
    if callable(attribution):
        out = attribution(model, x, target)
        if isinstance(out, Attribution):
            return out
        return resolve_attribution(model, x, out, target)
    raise TypeError("attribution must be an Attribution, a tensor of values, a method name or a callable "
                    f"fn(model, x, target); got {type(attribution).__name__}")


def fixed_target(model, x: torch.Tensor, target, attribution: Attribution | None = None,
                 batch_size: int | None = None):
    """The per-sample class indices (or callable) the metric scores: the attribution's own target when it
    has class indices, else ``target`` resolved on the model's outputs (None: the predicted class).
    Returns ``(target_for_explain, Target, outputs)``."""
    if attribution is not None and isinstance(attribution.target, torch.Tensor) and target is None:
        target = attribution.target
    outputs = model_outputs(model, x, batch_size)
    tgt = resolve_target(target, outputs)
    fixed = tgt.classes if tgt.classes is not None else target
    return fixed, tgt, outputs


@torch.inference_mode()
def model_outputs(model, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    step = batch_size or rows_per_chunk(model, x, None, None, grad=False)
    with eval_mode(model, warn=False):
        return in_chunks(x.shape[0], step, lambda s, e: call_model(model, x[s:e]))


OUTPUTS = ("probability", "target")


class Scorer:
    """Scores perturbed inputs: the target output (``"target"``, what ``explain`` attributes) or its softmax
    probability (``"probability"``), for rows that belong to samples ``rows``; chunked, inference mode."""

    def __init__(self, model, x: torch.Tensor, target=None, output: str = "target",
                 batch_size: int | None = None, attribution: Attribution | None = None):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.model = model
        self.fixed, self.target, self.outputs = fixed_target(model, x, target, attribution, batch_size)
        self.output = output
        self.step = batch_size or rows_per_chunk(model, x, None, None, grad=False)
        self.n_evals = 0

    def _score(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.output == "probability" and out.dim() == 2 and out.shape[1] > 1:
            out = out.softmax(dim=1)
        return self.target(out, rows).to(torch.float64)

    def base(self) -> torch.Tensor:
        """Scores of the unperturbed inputs."""
        return self._score(self.outputs, torch.arange(self.outputs.shape[0]))

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        with eval_mode(self.model, warn=False):
            out = in_chunks(x.shape[0], self.step, lambda s, e: self._score(call_model(self.model, x[s:e]), rows[s:e]))
        self.n_evals += x.shape[0]
        return out

    def batches(self, n_rows: int, make: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                desc: str, progress: bool | None) -> torch.Tensor:
        """Score ``n_rows`` perturbed rows built chunk by chunk by ``make(row_ids) -> (inputs, sample_rows)``."""
        out = torch.empty(n_rows, dtype=torch.float64)
        starts = range(0, n_rows, self.step)
        for s in progress_bar(starts, len(starts), desc, progress):
            ids = torch.arange(s, min(s + self.step, n_rows))
            xs, rows = make(ids)
            out[ids] = self(xs, rows).cpu()
        return out


# ----------------------------------------------------------------------------------------------- units
@dataclass
class Units:
    """Groups of input elements removed together: ``labels`` ``[N, *x.shape[1:]]`` (long, 0..U-1),
    ``scores`` ``[N, U]`` (the attribution of each unit), ``valid`` ``[N, U]`` (the unit is non-empty)."""
    labels: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor
    kind: str

    @property
    def n_valid(self) -> torch.Tensor:
        return self.valid.sum(1)

    def order(self, seed: int | None = 0, descending: bool = True) -> torch.Tensor:
        """Rank of every unit ``[N, U]`` (0 = first removed; empty units last); ties broken at random."""
        g = torch.Generator().manual_seed(0 if seed is None else int(seed))
        jitter = torch.rand(self.scores.shape, generator=g, dtype=torch.float64)
        s = self.scores.to(torch.float64)
        s = s if descending else -s
        key = torch.where(self.valid, s, torch.full_like(s, -math.inf))
        # sort by score, then by random jitter among equal scores
        idx = jitter.argsort(dim=1)
        key_j = key.gather(1, idx)
        o = key_j.argsort(dim=1, descending=True, stable=True)
        order = idx.gather(1, o)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
        return rank

    def mask(self, unit_mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Element mask ``[B, *x.shape[1:]]`` of the units selected in ``unit_mask`` ``[B, U]`` (rows -> samples)."""
        lab = self.labels[rows.to(self.labels.device)]
        flat = lab.reshape(lab.shape[0], -1)
        m = unit_mask.to(flat.device).gather(1, flat)
        return m.view(lab.shape)


def _expand_labels(players: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Player labels broadcast to ``[N, *x.shape[1:]]`` (labels given per sample, shared, or without the
    channel dimension of images are accepted)."""
    p = torch.as_tensor(players).to(x.device)
    if p.is_floating_point():
        raise TypeError("players must be an integer label tensor")
    p = p.long()
    shape = tuple(x.shape)
    cands = [p]
    if x.dim() > 2:
        if p.dim() == x.dim() - 1 and tuple(p.shape[1:]) == shape[2:] and p.shape[0] == shape[0]:
            cands.insert(0, p.unsqueeze(1))                       # [N, *S] -> [N, 1, *S]
        elif p.dim() == x.dim() - 2:
            cands.insert(0, p.view(1, 1, *p.shape))                # [*S] -> [1, 1, *S]
    for c in cands:
        try:
            return torch.broadcast_to(c, shape).contiguous()
        except RuntimeError:
            continue
    raise ValueError(f"players of shape {tuple(p.shape)} do not fit the inputs {shape}; give labels shaped "
                     "like the input, like one sample, or like its spatial dimensions")


def element_values(attr: Attribution, x: torch.Tensor) -> torch.Tensor:
    """Attribution values on the input's elements ``[N, *x.shape[1:]]``: the values themselves at input level;
    for a layer attribution its heatmap resized to the input and spread evenly over the channels."""
    v = attr.values.detach().to(x.device)
    if tuple(v.shape) == tuple(x.shape):
        return v.to(torch.float64)
    if x.dim() > 2:
        m = attr.heatmap(size=tuple(x.shape[2:])).to(x.device, torch.float64)
        if tuple(m.shape) == (x.shape[0],) + tuple(x.shape[2:]):
            return (m.unsqueeze(1) / x.shape[1]).expand(x.shape).contiguous()
    raise ValueError(f"attribution values of shape {tuple(v.shape)} cannot be mapped onto inputs "
                     f"{tuple(x.shape)}")


def player_scores(attr: Attribution, labels: torch.Tensor, values: torch.Tensor, n_units: int) -> torch.Tensor:
    """Score of each player ``[N, U]``: the sum of the values over its elements."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1)
    return torch.zeros(n, n_units, dtype=torch.float64, device=values.device).scatter_add_(
        1, flat, values.reshape(n, -1).to(torch.float64))


def make_units(attr: Attribution, x: torch.Tensor, players=None) -> Units:
    """Units for perturbation metrics: ``players`` given here, else ``attr.players``, else one unit per
    feature (tables) or per spatial position with all channels together (images, series, volumes)."""
    values = element_values(attr, x)
    if isinstance(players, str):
        raise TypeError("players must be an integer label tensor (e.g. ak.grid(x, cells=8)), not a string")
    if players is None and attr.players is not None and attr.layer is None:
        players = attr.players
    if players is not None:
        labels = _expand_labels(players, x)
        if labels.min() < 0:
            raise ValueError("player labels must be >= 0")
        kind = "players"
    elif x.dim() == 2:
        labels = torch.arange(x.shape[1], device=x.device).expand(x.shape).contiguous()
        kind = "features"
    else:
        spatial = tuple(x.shape[2:])
        pos = torch.arange(int(np.prod(spatial)), device=x.device).view(1, 1, *spatial)
        labels = pos.expand(x.shape).contiguous()
        kind = "positions"
    n_units = int(labels.max().item()) + 1
    n = x.shape[0]
    counts = torch.zeros(n, n_units, dtype=torch.float64, device=x.device).scatter_add_(
        1, labels.reshape(n, -1), torch.ones(labels.reshape(n, -1).shape, dtype=torch.float64, device=x.device))
    scores = player_scores(attr, labels, values, n_units)
    pv = attr.info.get("player_values") if kind == "players" and players is attr.players else None
    if pv is not None:
        pv = torch.as_tensor(pv).to(torch.float64).reshape(n, -1).to(scores.device)
        if pv.shape[1] == n_units:       # the estimator's own per-player values (labels 0..l-1)
            scores = pv
    return Units(labels=labels.cpu(), scores=scores.cpu(), valid=(counts > 0).cpu(), kind=kind)


@contextlib.contextmanager
def no_grad_eval(model):
    with torch.inference_mode(), eval_mode(model, warn=False):
        yield


def resize_maps(m: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(m.shape[1:]) == tuple(size):
        return m
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(m.unsqueeze(1).float(), size=size, mode=mode, align_corners=False).squeeze(1)


def as_maps(attribution: Any, size: tuple[int, ...] | None = None) -> torch.Tensor:
    """Per-position maps ``[N, *S]`` from an Attribution (``heatmap()``), a map tensor ``[N, *S]`` or values
    ``[N, C, *S]`` (channel sum); resized to ``size`` when given."""
    if isinstance(attribution, Attribution):
        m = attribution.heatmap(size=size)
    else:
        if isinstance(attribution, np.ndarray):
            attribution = torch.from_numpy(attribution)
        if not isinstance(attribution, torch.Tensor):
            raise TypeError(f"expected an Attribution or a tensor of maps, got {type(attribution).__name__}")
        m = attribution.detach()
        if size is not None and m.dim() == len(size) + 2:
            m = m.sum(1)
        elif size is None and m.dim() == 4:
            m = m.sum(1)
    m = m.detach().to(torch.float64)
    if size is not None and tuple(m.shape[1:]) != tuple(size):
        if m.dim() - 1 != len(size):
            raise ValueError(f"maps of shape {tuple(m.shape)} do not match masks of spatial size {size}")
        m = resize_maps(m, size).to(torch.float64)
    return m
