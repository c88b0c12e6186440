"""Tabular pictures: global importance bars, beeswarm, and one prediction's waterfall."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..attribution import Attribution
from ..importance import Importance, global_importance
from ._mpl import save_figure, new_figure
from .colors import BLUE, RED
from .heatmaps import _feature_names
from .maps import check_index, class_label, sample_target


def _np(t) -> np.ndarray:
    return np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)


def plot_importance(importance, names: Sequence[str] | None = None, *, top: int = 20, title: str | None = None,
                    ax=None, path=None):
    """Global importance: mean ``|attribution|`` per feature with ``±1.96`` standard-error bars.

    ``importance``: an :class:`attrkit.Importance` (or anything ``ak.global_importance`` accepts)."""
    imp = importance if isinstance(importance, Importance) else global_importance(importance)
    mean, err = _np(imp.mean).reshape(-1), _np(imp.std_err).reshape(-1)
    names = _feature_names(names if names is not None else imp.names, mean.size)
    order = np.argsort(-mean)[:top][::-1]
    fig = ax.figure if ax is not None else new_figure(6.0, 0.28 * len(order) + 1.4)
    ax = ax if ax is not None else fig.subplots()
    e = np.where(np.isfinite(err[order]), 1.96 * err[order], 0.0)
    ax.barh(range(len(order)), mean[order], xerr=e, color="0.45", ecolor="0.1", capsize=2)
    ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=8)
    ax.set_xlabel(f"mean |attribution| over {imp.n} samples (bars: 95% interval)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    more = f", top {len(order)} of {mean.size}" if mean.size > len(order) else ""
    ax.set_title(title or f"global importance{more}", fontsize=9)
    return save_figure(fig, path)


def _swarm_offsets(x: np.ndarray, width: float = 0.4, bins: int = 60) -> np.ndarray:
    """Vertical offsets that spread points sharing an x bin (a simple beeswarm)."""
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    b = np.zeros(x.size, dtype=int) if hi <= lo else np.minimum(((x - lo) / (hi - lo) * bins).astype(int), bins - 1)
    off = np.zeros(x.size)
    counts = np.bincount(b, minlength=bins)
    peak = max(int(counts.max()), 1)
    seen = np.zeros(bins, dtype=int)
    for i in np.argsort(x, kind="stable"):
        k = seen[b[i]]
        seen[b[i]] += 1
        off[i] = ((k + 1) // 2) * (1 if k % 2 else -1)
    return off / peak * width


def plot_beeswarm(attribution, features=None, names: Sequence[str] | None = None, *, top: int = 12,
                  title: str | None = None, ax=None, path=None, raw=None):
    """One row per feature (the ``top`` by mean ``|attribution|``): each dot is a sample, placed at its
    attribution and coloured by the feature's value (dark = low, yellow = high).

    ``attribution``: an ``Attribution`` of a table ``[N, F]`` (its inputs colour the dots) or an array
    ``[N, F]`` with ``features`` given. ``raw`` (rows ``[N, F]`` or a function of the inputs) colours the dots
    by the raw values instead of the model's (standardised) inputs. Names default to the attribution's."""
    if isinstance(attribution, Attribution):
        attribution.require_single("a beeswarm plot")
        names = names if names is not None else attribution.feature_names
        if raw is not None and features is None:
            features = raw(attribution.inputs) if callable(raw) else raw
        vals = _np(attribution.values)
        feats = _np(attribution.inputs) if features is None and attribution.inputs is not None else features
    else:
        vals, feats = _np(attribution), features
    if vals.ndim != 2:
        raise ValueError(f"beeswarm needs tabular attributions [N, F], got shape {vals.shape}")
    feats = _np(feats) if feats is not None else None
    if feats is not None and feats.shape != vals.shape:
        raise ValueError(f"features {feats.shape} and attributions {vals.shape} differ in shape")
    names = _feature_names(names, vals.shape[1])
    order = np.argsort(-np.abs(vals).mean(0))[:top][::-1]
    fig = ax.figure if ax is not None else new_figure(6.4, 0.4 * len(order) + 1.5)
    ax = ax if ax is not None else fig.subplots()
    sc = None
    for row, j in enumerate(order):
        x = vals[:, j]
        y = row + _swarm_offsets(x)
        if feats is not None:
            f = feats[:, j]
            lo, hi = np.percentile(f, 5), np.percentile(f, 95)
            c = np.clip((f - lo) / (hi - lo), 0, 1) if hi > lo else np.full(f.shape, 0.5)
            sc = ax.scatter(x, y, c=c, cmap="viridis", vmin=0, vmax=1, s=9, linewidths=0)
        else:
            ax.scatter(x, y, color="0.3", s=9, linewidths=0)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(order)), [names[j] for j in order], fontsize=8)
    ax.set_xlabel("attribution (right: raises the score, left: lowers it)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title or f"attributions of {vals.shape[0]} samples per feature", fontsize=9)
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax, pad=0.02, shrink=0.8)
        cb.set_ticks([0, 1])
        cb.set_ticklabels(["low", "high"])
        cb.set_label("feature value", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return save_figure(fig, path)


def base_value(a: Attribution, index: int, model=None) -> tuple[float | None, str]:
    """The reference output the contributions start from, and where it came from.

    ``info["base_value"]`` when the method reports it; else ``model(baseline)`` when ``model`` and a baseline
    tensor are given; else None (the caller then shows the implied value ``prediction - sum``)."""
    for key in ("base_value", "base_values", "baseline_value", "reference_output"):
        if key in a.info:
            b = a.info[key]
            b = _np(b).reshape(-1)
            return float(b[index] if b.size > 1 else b[0]), "reported by the method"
    if model is not None and isinstance(a.baseline, torch.Tensor):
        base = a.baseline
        if base.dim() == a.values.dim() and base.shape[0] == len(a):
            base = base[index:index + 1]
        elif base.dim() == a.values.dim() - 1:
            base = base.unsqueeze(0)
        with torch.no_grad():
            out = model(base.to(a.values.device)).reshape(base.shape[0], -1).mean(0)
        cls = sample_target(a, index)
        return float(out[cls if cls is not None and out.numel() > 1 else 0]), "model output at the baseline"
    return None, ""


def plot_waterfall(attribution: Attribution, index: int = 0, names: Sequence[str] | None = None, *,
                   top: int = 10, model=None, base: float | None = None, class_names=None,
                   title: str | None = None, ax=None, path=None, raw=None):
    """One prediction as a waterfall: start at the base value, add each feature's contribution (red up,
    blue down; the ``top`` largest, the rest in one bar), arrive at the model's output.

    The base value is ``base``, else the method's reported ``info["base_value"]``, else ``model(baseline)``,
    else implied (``output - sum``). When the contributions miss the output by more than 1% of the change
    they explain (a method without completeness), the gap is drawn as its own grey bar ("not explained"), so
    the picture never pretends to an additivity it does not have.

    Each feature is labelled ``name = value``: the model's input, or with ``raw`` (rows ``[N, F]`` of raw values,
    or a function mapping the model's inputs to raw units, e.g. ``lambda z: z * std + mean``) the raw value.
    Names and class names default to the attribution's."""
    index = check_index(attribution, index)
    attribution.require_single("a waterfall plot")
    vals = _np(attribution.values[index]).reshape(-1)
    names = _feature_names(names if names is not None else attribution.feature_names, vals.size)
    class_names = class_names if class_names is not None else attribution.class_names
    shown_values = None
    if raw is not None:
        from .heatmaps import raw_row
        shown_values = raw_row(attribution, index, raw)
    elif attribution.inputs is not None and attribution.inputs[index].numel() == vals.size:
        shown_values = _np(attribution.inputs[index]).reshape(-1)
    cls = sample_target(attribution, index)
    pred = None
    if attribution.outputs is not None:
        o = _np(attribution.outputs[index]).reshape(-1)
        pred = float(o[cls]) if cls is not None and o.size > 1 else float(o[0])
    src = ""
    if base is None:
        base, src = base_value(attribution, index, model)
    else:
        src = "given"
    if base is None:
        if pred is None:
            raise ValueError("the waterfall needs the model's output or a base value; pass base=")
        base, src = pred - float(vals.sum()), "implied: prediction - sum of contributions"
    order = np.argsort(-np.abs(vals))
    shown, rest = order[:top], order[top:]
    steps = [(names[i] + (f" = {shown_values[i]:.4g}" if shown_values is not None else ""), float(vals[i]))
             for i in shown]
    if rest.size:
        steps.append((f"{rest.size} other features", float(vals[rest].sum())))
    end = base + sum(s for _, s in steps)
    # a gap above 1% of the explained change gets its own bar (methods without completeness)
    if pred is not None and abs(pred - end) > max(1e-9, 0.01 * max(abs(pred - base), float(np.abs(vals).sum()))):
        steps.append(("not explained (sum ≠ output)", pred - end))
    fig = ax.figure if ax is not None else new_figure(6.6, 0.34 * (len(steps) + 2) + 1.3)
    ax = ax if ax is not None else fig.subplots()
    y = len(steps)
    ax.barh(y + 1, base, color="0.75")
    ax.text(base, y + 1, f" {base:.3g}", va="center", fontsize=7)
    level = base
    labels = [f"base value ({src})"]
    for k, (lab, d) in enumerate(steps):
        row = y - k
        colour = "0.6" if lab.startswith("not explained") else (RED if d >= 0 else BLUE)
        ax.barh(row, d, left=level, color=colour)
        ax.text(max(level, level + d), row, f" {d:+.3g}", va="center", fontsize=7)
        level += d
        labels.append(lab)
    final = pred if pred is not None else level
    ax.barh(0, final, color="0.35")
    ax.text(final, 0, f" {final:.3g}", va="center", fontsize=7)
    labels.append("model output")
    ax.set_yticks(range(y + 1, -1, -1), labels, fontsize=8)
    ax.axvline(base, color="0.6", lw=0.6, ls="--")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("model output for the target", fontsize=8)
    tgt = class_label(cls, class_names) if cls is not None else "output"
    ax.set_title(title or f"{attribution.method}: sample {index}, target '{tgt}'", fontsize=9)
    return save_figure(fig, path)


__all__ = ["plot_importance", "plot_beeswarm", "plot_waterfall", "base_value"]
