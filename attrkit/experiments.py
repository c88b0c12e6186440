"""The thesis' chapter 3 as measured tables, recomputed from the built-in models every time they run.

- :func:`class_specificity_table` — Figure 3.1: pixel-level vs last-conv-layer maps for both classes of
  two-object images: pointing game and relevance mass on the right object, rank correlation A vs B.
- :func:`sanity_table` — Figures 3.3/3.4: similarity of maps to the original after cascading randomisation,
  pixel level vs layer level, per method.
- :func:`layer_shapley_timing` — Figure 3.2: Shapley values over the last conv layer's cells vs over pixel
  superpixels: time, evaluations, rank correlation of the upsampled maps.
- :func:`faithfulness_table` — deletion / insertion AUC and MoRF-LeRF per method on the shapes and digits models.
- :func:`reference_choice_table` — IG with baselines zeros / mean / blur / noise: how maps and scores change.

Each returns a :class:`Table` (a list of dict rows with ``title``, ``settings``, ``seconds``, ``notes``; a pandas
DataFrame with ``as_frame=True``) that can ``save(csv_path, figure_path)``. ``python -m attrkit.experiments
--all --out docs/`` writes them all into ``docs/results.md``.
"""
from __future__ import annotations

import argparse
import csv
import inspect
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

log = logging.getLogger("attrkit.experiments")

EXPERIMENTS = ("class_specificity", "sanity", "layer_shapley", "faithfulness", "reference_choice")

# Methods in the order of the thesis' figures; everything else ak.methods() lists is appended.
THESIS_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                  "deconvnet", "grad_cam")
# Per-method settings that keep every experiment within minutes on two CPU cores.
PRESETS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"n_samples": 8},
           "smoothgrad_sq": {"n_samples": 8}, "vargrad": {"n_samples": 8}, "gradient_shap": {"n_samples": 8}}
SAMPLED_BUDGET = 256     # n_samples for sampled coalition methods (4 per player of an 8 x 8 grid)
GRID_CELLS = 8           # pixel-level players of coalition methods: an 8 x 8 grid


# ============================================================================================== Table
class Table(list):
    """A tidy table: a list of dict rows plus ``name``, ``title``, ``settings``, ``seconds`` and ``notes``."""

    def __init__(self, rows: Iterable[dict] = (), *, name: str = "", title: str = "", settings: dict | None = None,
                 seconds: float | None = None, notes: Sequence[str] = (), plot: Callable | None = None):
        super().__init__(dict(r) for r in rows)
        self.name, self.title = name, title
        self.settings = dict(settings or {})
        self.seconds = seconds
        self.notes = list(notes)
        self._plot = plot
        self.description = ""

    @property
    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self:
            cols += [k for k in r if k not in cols]
        return cols

    def column(self, key: str) -> list:
        return [r.get(key) for r in self]

    def where(self, **match) -> "Table":
        """The rows whose fields equal ``match``."""
        return Table([r for r in self if all(r.get(k) == v for k, v in match.items())], name=self.name,
                     title=self.title, settings=self.settings, seconds=self.seconds, notes=self.notes)

    def to_frame(self):
        """A pandas DataFrame (``attrs`` keep title, settings, seconds and notes)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("as_frame=True needs pandas (`pip install pandas`)") from err
        df = pd.DataFrame(list(self), columns=self.columns)
        df.attrs.update({"name": self.name, "title": self.title, "settings": self.settings,
                         "seconds": self.seconds, "notes": self.notes})
        return df

    def to_markdown(self, digits: int = 3, header: bool = True) -> str:
        cols = self.columns
        lines = []
        if header and self.title:
            lines.append(f"### {self.title}\n")
        if not self:
            lines.append("(no rows)")
        else:
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "|".join("---" for _ in cols) + "|")
            for r in self:
                lines.append("| " + " | ".join(_fmt(r.get(c), digits) for c in cols) + " |")
        return "\n".join(lines)

    def save(self, csv_path, figure_path=None) -> Path:
        """Write the rows as CSV (and the table's figure when ``figure_path`` is given, needs matplotlib)."""
        path = Path(csv_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = self.columns
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            for r in self:
                w.writerow({c: r.get(c) for c in cols})
        if figure_path is not None:
            self.figure(figure_path)
        return path

    def figure(self, path=None):
        """The table's figure (a matplotlib Figure), saved to ``path`` when given."""
        from .viz._mpl import finish
        fig = (self._plot or _bar_plot)(self)
        return finish(fig, path)

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {len(self)} rows, columns={self.columns})"


def _fmt(v, digits: int) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 10 ** 5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _numeric_cols(table: Table) -> list[str]:
    return [c for c in table.columns if all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                                            for v in table.column(c) if v is not None)
            and any(v is not None for v in table.column(c))]


def _label_cols(table: Table) -> list[str]:
    num = set(_numeric_cols(table))
    return [c for c in table.columns if c not in num]


def _bar_plot(table: Table, metrics: Sequence[str] | None = None):
    """Grouped horizontal bars: one group per row (labelled by its text fields), one bar per metric."""
    from .viz._mpl import new_figure
    metrics = list(metrics or [c for c in _numeric_cols(table) if not c.startswith("seconds")
                               and c not in ("n", "stage", "n_players", "n_evals")][:4])
    labels = [" / ".join(str(r.get(c)) for c in _label_cols(table) if r.get(c) is not None) for r in table]
    fig = new_figure(7.0, max(2.5, 0.28 * len(table) * max(1, len(metrics)) ** 0.5 + 1))
    ax = fig.add_subplot(1, 1, 1)
    h = 0.8 / max(1, len(metrics))
    ys = np.arange(len(table))
    for k, m in enumerate(metrics):
        vals = [np.nan if r.get(m) is None else float(r.get(m)) for r in table]
        ax.barh(ys + k * h, vals, height=h, label=m)
    ax.set_yticks(ys + h * (len(metrics) - 1) / 2, labels, fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.set_title(table.title, fontsize=9)
    return fig


def _finish_table(rows, name, title, settings, start, notes, as_frame, plot=None):
    t = Table(rows, name=name, title=title, settings=settings, seconds=time.perf_counter() - start, notes=notes,
              plot=plot)
    if not t:
        raise RuntimeError(f"experiment {name} produced no rows: {'; '.join(notes) or 'no method could run'}")
    return t.to_frame() if as_frame else t


# ============================================================================================= set-up
ZOO_DATA = {"shapes_cnn": "shapes", "digits_cnn": "digits", "faces_cnn": "faces",
            "breast_cancer_mlp": "breast_cancer", "diabetes_mlp": "diabetes"}


def _zoo(name: str, progress):
    from . import zoo
    return zoo.pretrained(name, progress=bool(progress) if progress is not None else False)


def load_model_and_data(model: str = "shapes_cnn", data: str | None = None, *, n: int = 16, seed: int = 0,
                        progress: bool | None = None):
    """A trained model (a zoo name, trained and cached on first use, or a file from ``attrkit.train.save``) and
    ``n`` held-out samples: generated images with a seed never used for training (``10000 + seed``), or a
    seeded pick from the zoo model's held-out split."""
    if os.path.exists(str(model)):
        from .train import load
        net, name = load(model), None
    else:
        if model not in ZOO_DATA:
            raise ValueError(f"unknown model {model!r}: give a zoo name ({', '.join(ZOO_DATA)}) or a model file")
        net, name = _zoo(model, progress), model
    data = data or (ZOO_DATA.get(name) if name else None)
    if data is None:
        raise ValueError("a model file needs data= (e.g. shapes, digits, breast_cancer)")
    net.eval()
    return net, _held_out(data, n, seed, net, name)


def _held_out(data: str, n: int, seed: int, model=None, zoo_name: str | None = None):
    from . import data as D
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if data in ("shapes", "shapes_pairs"):
        return getattr(D, data)(n=n, size=_input_size(model) or 64, seed=10_000 + seed, progress=False)
    if zoo_name is not None and ZOO_DATA.get(zoo_name) == data:
        from . import zoo
        ds = zoo.dataset(zoo_name, "test")
    elif hasattr(D, data) and data in D.__all__:
        ds = getattr(D, data)()
    else:
        raise ValueError(f"unknown data set {data!r}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:min(n, len(ds))]
    return ds.subset(idx)


def _input_size(model) -> int | None:
    cfg = getattr(model, "config", None) or {}
    return cfg.get("in_size") if isinstance(cfg, dict) else None


def last_conv_layer(model) -> str:
    """The layer for layer-level maps: the ReLU after the last convolution (``model.last_relu``) when the model
    names it, else the last ``Conv2d``."""
    for attr in ("last_relu", "last_conv"):
        name = getattr(model, attr, None)
        if isinstance(name, str):
            return name
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no convolutional layer")
    return convs[-1]


def available_methods(requested=None, notes: list | None = None) -> list[str]:
    """``requested`` (default: the thesis' methods, then every other registered one) restricted to what
    ``ak.methods()`` lists; missing ones are logged and noted."""
    from .registry import methods
    reg = list(methods())
    names = list(requested) if requested is not None else list(THESIS_METHODS) + [m for m in reg if m not in THESIS_METHODS]
    out = []
    for m in names:
        if m in reg:
            out.append(m)
        else:
            msg = f"{m}: not registered (ak.methods() does not list it) - skipped"
            log.info(msg)
            if notes is not None:
                notes.append(msg)
    return out


def method_options(name: str, x: torch.Tensor, level: str, seed: int = 0) -> dict | None:
    """Settings for ``name`` at ``level`` ("pixel" | "layer") in the experiments, or None when it cannot run
    there. Coalition methods get an 8x8 grid of players at pixel level (the layer's cells at a layer) and a
    budget of :data:`SAMPLED_BUDGET` samples."""
    from .registry import get
    return get(name).quick_options(x, level, presets=PRESETS, grid_cells=GRID_CELLS, budget=SAMPLED_BUDGET,
                                   seed=seed)


def _levels(model) -> list[tuple[str, str | None]]:
    return [("pixel", None), ("layer", last_conv_layer(model))]


def _explain_pair(model, x, method, targets, layer, opts, batch_size, progress):
    from .api import explain
    kw = dict(opts)
    if layer is not None:
        kw["layer"] = layer
    return [explain(model, x, method=method, target=t, batch_size=batch_size, progress=progress, **kw)
            for t in targets]


def _random_attr(x, seed):
    from .attribution import Attribution
    g = torch.Generator().manual_seed(int(seed))
    return Attribution(values=torch.rand(x.shape, generator=g).to(x), method="random", inputs=x)


def _one_bar(fn):
    """One progress bar for the whole experiment: the ``explain`` calls and metrics inside join it."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, progress: bool | None = None, **kwargs):
        from .progress import call_bar
        with call_bar(progress, f"attrkit {fn.__name__}"):
            return fn(*args, progress=progress, **kwargs)
    return wrapper


# ================================================================================ 1. class specificity
@_one_bar
def class_specificity_table(n: int = 16, model: str = "shapes_cnn", methods=None, *, seed: int = 0,
                            batch_size: int | None = None, progress: bool | None = None,
                            as_frame: bool = False):
    """Figure 3.1 as numbers. On ``n`` two-object images (``data.shapes_pairs``, unseen seed) every method is
    computed at pixel level and at the last conv layer for class A (the present class the model scores higher,
    the thesis' "beagle") and for class B (the other present class, its "egyptian cat"). Columns: ``pointing_a``/
    ``pointing_b`` (the map's maximum on the right object), ``mass_a``/``mass_b`` (share of positive relevance
    on the right object), ``mass_wrong`` (mean share on the other object), ``rank_corr_ab`` (Spearman between
    the two maps: 1 = the same map whatever the class), ``seconds``. A random map is the chance reference."""
    from .metrics import class_specificity
    start = time.perf_counter()
    notes: list[str] = []
    net, _ = load_model_and_data(model, n=1, seed=seed, progress=progress)
    ds = _held_out("shapes_pairs", n, seed, net)
    x, y, masks = ds.x, ds.y, ds.masks
    with torch.inference_mode():
        out = net(x)
    # A = the present class the model scores higher (the thesis' "beagle"), B = the other one ("egyptian cat")
    swap = out.gather(1, y[:, 1:2]).squeeze(1) > out.gather(1, y[:, 0:1]).squeeze(1)
    y = torch.where(swap.unsqueeze(1), y.flip(1), y)
    top2 = out.topk(2, dim=1).indices.sort(1).values
    both = float((top2 == y.sort(1).values).all(1).float().mean())
    top1 = float((out.argmax(1) == y[:, 0]).float().mean())
    rows = []
    rnd = [_random_attr(x, seed), _random_attr(x, seed + 1)]
    r = class_specificity(net, x, y, masks, tuple(rnd))
    rows.append(_cs_row("random (chance)", "pixel", None, r, 0.0))
    for m in available_methods(methods, notes):
        for level, layer in _levels(net):
            opts = method_options(m, x, level, seed)
            if opts is None:
                continue
            t0 = time.perf_counter()
            try:
                pair = _explain_pair(net, x, m, (y[:, 0], y[:, 1]), layer, opts, batch_size, progress)
                r = class_specificity(net, x, y, masks, tuple(pair))
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            rows.append(_cs_row(m, level, layer, r, time.perf_counter() - t0))
    settings = {"model": model, "images": n, "data": "shapes_pairs(seed=10000+seed)", "seed": seed,
                "layer": last_conv_layer(net), "A": "the present class with the higher logit",
                "top1_is_A": round(top1, 3), "top2_are_A_and_B": round(both, 3)}
    return _finish_table(rows, "class_specificity", "Class specificity (Figure 3.1): pixel level vs last conv layer",
                         settings, start, notes, as_frame,
                         plot=lambda t: _bar_plot(t, ["pointing_a", "pointing_b", "mass_a", "mass_b"]))


def _cs_row(method, level, layer, r, seconds):
    d = r.details
    return {"method": method, "level": level, "pointing_a": d["pointing_a_mean"], "pointing_b": d["pointing_b_mean"],
            "mass_a": d["mass_a_mean"], "mass_b": d["mass_b_mean"],
            "mass_wrong": float(np.nanmean([d["mass_a_on_b_mean"], d["mass_b_on_a_mean"]])),
            "rank_corr_ab": r.score, "seconds": seconds}


# ============================================================================================ 2. sanity
SANITY_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                  "deconvnet", "grad_cam", "lrp", "gradient_shap")


@_one_bar
def sanity_table(n: int = 8, model: str = "shapes_cnn", methods=None, *, mode: str = "cascading", seed: int = 0,
                 batch_size: int | None = None, progress: bool | None = None, as_frame: bool = False):
    """Figures 3.3/3.4 as numbers: cascading (or independent) randomisation of the model's parametrised layers,
    top layer first, for each method at pixel level and at the last conv layer. One row per method, level and
    stage: the layer just randomised, the fraction of layers randomised, and the similarity of the new maps to
    the original ones (``spearman_abs``, ``spearman``, ``ssim``, ``hog``; mean over ``n`` images)."""
    from .metrics import model_randomisation
    start = time.perf_counter()
    notes: list[str] = []
    net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
    x = ds.x
    wanted = SANITY_METHODS if methods is None else methods
    rows = []
    for m in available_methods(wanted, notes):
        for level, layer in _levels(net):
            opts = method_options(m, x, level, seed)
            if opts is None:
                continue
            opts.pop("seed", None)        # model_randomisation seeds both the re-initialisation and the method
            try:
                r = model_randomisation(net, x, m, mode=mode, seed=seed, layer=layer, batch_size=batch_size,
                                        progress=progress, keep_maps=False, **opts)
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            if not r.details["weights_restored"]:   # pragma: no cover - guarded by the copy
                raise RuntimeError("the model's weights changed during the sanity check")
            for row in r.rows():
                rows.append({"method": m, "level": level, **row})
    settings = {"model": model, "images": n, "mode": mode, "seed": seed, "layer": last_conv_layer(net),
                "randomised": "reset_parameters() per layer, top layer first"}
    return _finish_table(rows, "sanity", f"Sanity check (Figures 3.3/3.4): {mode} randomisation", settings, start,
                         notes, as_frame, plot=_sanity_plot)


def _sanity_plot(table: Table):
    from .viz._mpl import new_figure
    fig = new_figure(9.0, 3.6)
    levels = sorted({r["level"] for r in table})
    for k, level in enumerate(levels):
        ax = fig.add_subplot(1, len(levels), k + 1)
        for m in dict.fromkeys(r["method"] for r in table if r["level"] == level):
            rs = [r for r in table if r["level"] == level and r["method"] == m]
            ax.plot([r["fraction_randomised"] for r in rs], [r["spearman_abs"] for r in rs], marker="o", label=m)
        ax.set_title(f"{level} level", fontsize=9)
        ax.set_xlabel("fraction of layers randomised (top first)")
        ax.set_ylabel("Spearman |map| vs original")
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=6)
    return fig


def sanity_summary(table) -> Table:
    """One row per method and level: ``spearman_abs`` after each stage (``s1``, ``s2``, ...)."""
    rows: dict = {}
    for r in table:
        key = (r["method"], r["level"])
        rows.setdefault(key, {"method": r["method"], "level": r["level"]})[f"after {r['n_randomised']}"] = r["spearman_abs"]
    return Table(rows.values(), name="sanity_summary", title="Spearman rank correlation (|map|) with the original "
                 "after randomising the top k layers")


# ===================================================================================== 3. layer Shapley
@_one_bar
def layer_shapley_timing(n: int = 4, model: str = "shapes_cnn", *, method: str = "kernel_shap",
                         n_samples: int = 1024, superpixels: int = 64, seed: int = 0, batch_size: int | None = None,
                         progress: bool | None = None, as_frame: bool = False):
    """Figure 3.2 as numbers: the same Shapley estimator (``method``, ``n_samples`` coalitions) over
    (a) the spatial cells of the last conv layer (masking its activation, evaluating only the rest of the
    network), (b) ``superpixels`` SLIC superpixels and (c) a pixel grid with as many cells as the layer.
    Columns: players, seconds, model evaluations, evaluations per second, the estimator's noise
    (``std_err_ratio``: mean standard error / range of the values), the Spearman rank correlation of each map
    with the layer map upsampled to pixels (``spearman_vs_layer``) and average-pooled onto the layer's cells
    (``spearman_cells``), and the pointing game / relevance mass on the object."""
    from .api import explain
    from .games.players import grid, superpixels as slic
    from .metrics import pointing_game, relevance_mass
    from .metrics._common import as_maps
    from .metrics._stats import spearman
    from .registry import methods as registered
    start = time.perf_counter()
    notes: list[str] = []
    if method not in registered():
        raise ValueError(f"{method!r} is not registered; layer_shapley_timing needs a Shapley estimator "
                         f"(available: {', '.join(m for m in registered() if 'shap' in m)})")
    net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
    x, masks = ds.x, ds.masks
    layer = last_conv_layer(net)
    from .core.modules import resolve_layer
    with torch.inference_mode():
        act_shape = _layer_shape(net, x[:1], layer)
    cells = tuple(act_shape[2:])
    players = {"layer cells": None, "SLIC superpixels": None, "pixel grid": None}
    variants = [("layer cells", layer, None)]
    try:
        variants.append(("SLIC superpixels", None, slic(x, n=superpixels)))
    except (ImportError, ValueError) as err:
        notes.append(f"SLIC superpixels skipped - {err}")
    variants.append(("pixel grid", None, grid(x, cells=cells)))
    rows, maps = [], {}
    for label, lay, pl in variants:
        kw = {"n_samples": n_samples, "seed": seed}
        if pl is not None:
            kw["players"] = pl
        if lay is not None:
            kw["layer"] = lay
        t0 = time.perf_counter()
        a = explain(net, x, method=method, batch_size=batch_size, progress=progress, **kw)
        sec = time.perf_counter() - t0
        maps[label] = as_maps(a, tuple(x.shape[2:])).cpu()
        n_players = _n_players(a, pl, cells)
        rows.append({"players": label, "level": "layer" if lay else "pixel", "n_players": n_players,
                     "seconds": sec, "n_evals": int(a.info.get("n_evals", 0)),
                     "evals_per_second": a.info.get("n_evals", 0) / max(sec, 1e-9),
                     "head_only": a.info.get("head_only"), "std_err_ratio": _se_ratio(a),
                     "pointing_game": pointing_game(a, masks).score, "relevance_mass": relevance_mass(a, masks).score})
    ref = maps["layer cells"]
    pool = lambda m: torch.nn.functional.adaptive_avg_pool2d(m.unsqueeze(1).float(), cells).squeeze(1)
    for r in rows:
        r["spearman_vs_layer"] = float(spearman(maps[r["players"]], ref).mean())
        r["spearman_cells"] = float(spearman(pool(maps[r["players"]]), pool(ref)).mean())
    base = rows[0]["seconds"]
    for r in rows:
        r["time_vs_layer"] = r["seconds"] / max(base, 1e-9)
    settings = {"model": model, "images": n, "method": method, "n_samples": n_samples, "layer": layer,
                "layer_cells": "x".join(map(str, cells)), "superpixels": superpixels, "seed": seed}
    return _finish_table(rows, "layer_shapley", f"Shapley values at the last conv layer vs pixel level (Figure 3.2, "
                         f"{method}, {n_samples} samples)", settings, start, notes, as_frame,
                         plot=_layer_shapley_plot)


def _layer_shapley_plot(t):
    """Seconds, agreement with the layer map and relevance mass: three units, three axes side by side."""
    from .viz.curves import plot_panels
    return plot_panels(list(t), ["seconds", "spearman_vs_layer", "relevance_mass"], ("players", "level"),
                       titles={"seconds": "seconds (lower: faster)", "spearman_vs_layer":
                               "Spearman ρ vs the layer map", "relevance_mass": "relevance mass on the object"},
                       title=t.title)


def _layer_shape(model, x, layer):
    from .core.modules import LayerTap, resolve_layer, eval_mode
    name, mod = resolve_layer(model, layer)
    with eval_mode(model, warn=False), LayerTap(mod, name) as tap:
        model(x)
        return tuple(tap.output.shape)


def _se_ratio(a) -> float | None:
    se, pv = a.info.get("std_err"), a.info.get("player_values")
    if se is None or pv is None:
        return None
    se = torch.as_tensor(se, dtype=torch.float64).reshape(len(a), -1)
    pv = torch.as_tensor(pv, dtype=torch.float64).reshape(len(a), -1)
    spread = (pv.amax(1) - pv.amin(1)).clamp_min(1e-12)
    return float((se.mean(1) / spread).mean())


def _n_players(a, players, cells):
    pv = a.info.get("player_values")
    if pv is not None:
        return int(torch.as_tensor(pv).reshape(len(a), -1).shape[1])
    if players is not None:
        return int(torch.as_tensor(players).reshape(players.shape[0], -1).max(1).values.float().mean().item()) + 1
    return int(np.prod(cells))


# ====================================================================================== 4. faithfulness
FAITHFULNESS_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap",
                        "guided_backprop", "deconvnet", "lrp", "grad_cam", "occlusion", "kernel_shap")


@_one_bar
def faithfulness_table(n: int = 16, models: Sequence[str] = ("shapes_cnn", "digits_cnn"), methods=None, *,
                       steps: int = 16, seed: int = 0, batch_size: int | None = None, progress: bool | None = None,
                       as_frame: bool = False):
    """Deletion and insertion AUC (Petsiuk et al. 2018; probability of the predicted class over ``steps`` steps
    of pixels, all channels together) per model and method, with two maskers: a blurred copy and zeros (black).
    ``abpc_<masker>`` = insertion - deletion AUC, which equals the area between the LeRF and MoRF deletion
    curves of Samek et al. 2017 (inserting the most relevant fraction 1 - f from the masker gives the same
    images as deleting the least relevant fraction f). A random map is the reference every method should beat
    (lower deletion, higher insertion, larger ABPC). Which masker is informative depends on the data: on
    shapes, scattered black pixels destroy any prediction (random deletion is as "good" as any map); on digits,
    whose background is black, a blurred digit stays recognisable and zeros are the natural masker."""
    from .metrics import deletion, insertion
    start = time.perf_counter()
    notes: list[str] = []
    wanted = FAITHFULNESS_METHODS if methods is None else methods
    rows = []
    for model in models:
        try:
            net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
        except (ImportError, ValueError, AttributeError) as err:
            notes.append(f"{model}: skipped - {err}")
            continue
        x = ds.x
        cands = [("random", "pixel", None, None)]
        for m in available_methods(wanted, notes if model == models[0] else None):
            for level, layer in _levels(net):
                opts = method_options(m, x, level, seed)
                if opts is not None:
                    cands.append((m, level, layer, opts))
        for m, level, layer, opts in cands:
            t0 = time.perf_counter()
            try:
                if m == "random":
                    a = _random_attr(x, seed)
                else:
                    from .api import explain
                    kw = dict(opts)
                    if layer is not None:
                        kw["layer"] = layer
                    a = explain(net, x, method=m, batch_size=batch_size, progress=progress, **kw)
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{model} {m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            sec = time.perf_counter() - t0
            kw = dict(steps=steps, batch_size=batch_size, seed=seed, progress=progress)
            row = {"model": model, "method": m, "level": level}
            for masker in ("blur", "zeros"):
                d = deletion(net, x, a, baseline=masker, **kw).score
                i = insertion(net, x, a, baseline=masker, **kw).score
                row.update({f"deletion_{masker}": d, f"insertion_{masker}": i, f"abpc_{masker}": i - d})
            row["seconds_explain"] = sec
            rows.append(row)
    settings = {"models": list(models), "images_per_model": n, "steps": steps,
                "maskers": "blur (Gaussian, sigma = size/10) and zeros (black)",
                "output": "softmax probability of the predicted class",
                "units": "pixels (all channels), or the layer map upsampled", "seed": seed}
    return _finish_table(rows, "faithfulness", "Faithfulness: deletion / insertion AUC per method", settings, start,
                         notes, as_frame, plot=lambda t: _bar_plot(t, ["deletion_blur", "insertion_blur", "abpc_blur",
                                                                        "abpc_zeros"]))


# ================================================================================== 5. reference choice
@_one_bar
def reference_choice_table(n: int = 16, model: str = "shapes_cnn", *, baselines=("zeros", "mean", "blur", "noise"),
                           steps: int = 32, curve_steps: int = 16, seed: int = 0, batch_size: int | None = None,
                           progress: bool | None = None, as_frame: bool = False):
    """The thesis' question "what makes a good reference?" (section 2.3): Integrated Gradients with each
    baseline. Columns: the mean relative completeness gap, deletion AUC with the baseline as the masker
    (``deletion_own``) and with zeros (``deletion_zeros``), insertion AUC from a blurred copy, relevance mass
    and pointing game on the object mask, and the mean Spearman correlation of the maps with those of each
    other baseline (``rho_<baseline>``)."""
    from .api import explain
    from .metrics import completeness, deletion, insertion, pointing_game, relevance_mass
    from .metrics._common import as_maps
    from .metrics._stats import spearman
    start = time.perf_counter()
    net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
    x, masks = ds.x, ds.masks
    attrs, rows = {}, []
    for b in baselines:
        t0 = time.perf_counter()
        a = explain(net, x, method="integrated_gradients", baseline=b, steps=steps, seed=seed,
                    batch_size=batch_size, progress=progress)
        sec = time.perf_counter() - t0
        attrs[b] = a
        comp = completeness(net, x, a)
        row = {"baseline": b, "completeness_gap": float(np.mean(comp.details["relative_gap"])),
               "f_x_minus_f_ref": float(np.mean(comp.details["f_x"] - comp.details["f_reference"])),
               "deletion_own": deletion(net, x, a, baseline=b, steps=curve_steps, seed=seed, progress=progress,
                                        batch_size=batch_size).score,
               "deletion_zeros": deletion(net, x, a, baseline="zeros", steps=curve_steps, seed=seed,
                                          progress=progress, batch_size=batch_size).score,
               "insertion_blur": insertion(net, x, a, baseline="blur", steps=curve_steps, seed=seed,
                                           progress=progress, batch_size=batch_size).score,
               "seconds": sec}
        if masks is not None:
            row["relevance_mass"] = relevance_mass(a, masks).score
            row["pointing_game"] = pointing_game(a, masks).score
        rows.append(row)
    size = tuple(x.shape[2:])
    maps = {b: as_maps(a, size).cpu() for b, a in attrs.items()}
    for row in rows:
        for b in baselines:
            row[f"rho_{b}"] = float(spearman(maps[row["baseline"]], maps[b]).mean())
    settings = {"model": model, "images": n, "ig_steps": steps, "curve_steps": curve_steps, "seed": seed,
                "blur": "Gaussian, sigma = size/10", "noise": "uniform in each image's range (seeded)",
                "mean": "per-image channel mean"}
    return _finish_table(rows, "reference_choice", "Integrated Gradients: choice of the reference", settings,
                         start, [], as_frame,
                         plot=lambda t: _bar_plot(t, ["deletion_own", "deletion_zeros", "insertion_blur",
                                                      "relevance_mass"]))


# ======================================================================================== CLI helpers
@_one_bar
def evaluate_methods(model, data, methods, metrics, *, layer=None, steps: int = 20, seed: int = 0,
                     batch_size: int | None = None, progress: bool | None = None) -> list[dict]:
    """One row per method: the mean of each requested metric on ``data`` (used by ``attrkit evaluate``)."""
    from . import metrics as M
    from .api import explain
    from .registry import get
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
        for k in metrics:
            if k in ("pointing_game", "relevance_mass", "relevance_rank", "mask_auc"):
                row[k] = getattr(M, k)(a, masks).score if masks is not None else float("nan")
            elif k in ("deletion", "insertion", "morf_lerf"):
                row[k] = getattr(M, k)(model, x, a, steps=steps, seed=seed, batch_size=batch_size,
                                       progress=progress).score
            elif k in ("faithfulness_correlation", "infidelity"):
                row[k] = getattr(M, k)(model, x, a, seed=seed, batch_size=batch_size, progress=progress).score
            elif k == "completeness":
                row["completeness_gap"] = float(np.mean(M.completeness(model, x, a).details["relative_gap"]))
            elif k == "max_sensitivity":
                row[k] = M.max_sensitivity(model, x, m, seed=seed, batch_size=batch_size, **kw).score
            elif k == "sanity":
                r = M.cascading_randomisation(model, x, m, seed=seed, batch_size=batch_size, keep_maps=False, **kw)
                half = max(1, len(r.layers) // 2)
                row["sanity_rho_half"] = r.rows()[half - 1]["spearman_abs"]
        rows.append(row)
    return rows


QUICK = {"class_specificity": {"n": 2, "methods": ["saliency", "grad_cam"]},
         "sanity": {"n": 2, "methods": ["saliency", "grad_cam"]},
         "layer_shapley": {"n": 1, "n_samples": 64, "superpixels": 16},
         "faithfulness": {"n": 2, "methods": ["saliency", "grad_cam"], "steps": 4},
         "reference_choice": {"n": 2, "steps": 8, "curve_steps": 4}}

FUNCTIONS = {"class_specificity": "class_specificity_table", "sanity": "sanity_table",
             "layer_shapley": "layer_shapley_timing", "faithfulness": "faithfulness_table",
             "reference_choice": "reference_choice_table"}


def run_all(names: Sequence[str] = EXPERIMENTS, *, out=None, quick: bool = False, files: bool = False,
            progress: bool | None = None) -> list[Table]:
    """Run experiments ``names`` with default settings (``quick``: tiny ones); with ``out``, write
    ``out/results.md`` (and ``out/<name>.csv`` + ``.png`` when ``files``)."""
    bad = [n for n in names if n not in FUNCTIONS]
    if bad:
        raise ValueError(f"unknown experiment(s) {bad}; choose from {', '.join(EXPERIMENTS)} or 'all'")
    tables = []
    for name in names:
        fn = globals()[FUNCTIONS[name]]
        kw = dict(QUICK[name]) if quick else {}
        t = fn(progress=progress, **kw)
        t.description = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())
        log.info("%s: %d rows in %.1f s", name, len(t), t.seconds)
        tables.append(t)
        if out is not None and files:
            Path(out).mkdir(parents=True, exist_ok=True)
            t.save(Path(out) / f"{name}.csv", Path(out) / f"{name}.png")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.md").write_text(results_markdown(tables, quick=quick))
    return tables


def results_markdown(tables: Sequence[Table], quick: bool = False) -> str:
    """``docs/results.md``: every table with its settings, run time and notes."""
    from .registry import methods
    lines = ["# attrkit results: the thesis' chapter 3 as numbers", "",
             "Generated by `python -m attrkit.experiments --all --out docs/` "
             f"({'quick settings' if quick else 'default settings'}); every number is recomputed from the built-in "
             "models when the command runs.", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads){_load()}. Methods registered: {', '.join(methods())}.", ""]
    for t in tables:
        lines += [f"## {t.title}", ""]
        if getattr(t, "description", ""):
            lines += [t.description, ""]
        lines += [f"Run time: {t.seconds:.1f} s. Settings: "
                  + ", ".join(f"{k}={v}" for k, v in t.settings.items()) + ".", ""]
        if t.name == "sanity":
            lines += [sanity_summary(t).to_markdown(header=False), "", "<details><summary>all stages and similarity "
                      "measures</summary>", "", t.to_markdown(header=False), "", "</details>", ""]
        else:
            lines += [t.to_markdown(header=False), ""]
        if t.notes:
            lines += ["Notes: " + "; ".join(t.notes), ""]
    return "\n".join(lines)


def _load() -> str:
    try:
        return f", load average {os.getloadavg()[0]:.1f} when the tables were written"
    except (AttributeError, OSError):   # pragma: no cover - not on every platform
        return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m attrkit.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"experiments to run: {', '.join(EXPERIMENTS)}")
    p.add_argument("--all", action="store_true", help="run every experiment")
    p.add_argument("--out", default=None, help="folder for results.md")
    p.add_argument("--files", action="store_true", help="also write <name>.csv and <name>.png")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    names = list(EXPERIMENTS) if args.all or not args.names else args.names
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tables = run_all(names, out=args.out, quick=args.quick, files=args.files,
                     progress=False if args.no_progress else None)
    for t in tables:
        print(f"## {t.title} ({t.seconds:.1f} s)")
        print(t.to_markdown(header=False))
        print()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
