"""Every registered method on a batch, at the pixels, at the last conv layer, or on table rows: settings per
method, failures and warnings as notes, each map's own error figure."""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from .settings import FIGURE_METHODS, MAX_EXACT_PLAYERS, Settings


def method_options(spec, x: torch.Tensor, level: str, S: Settings, n_players: int | None = None) -> dict | None:
    """Settings for method ``spec`` at ``level`` ("pixel" | "layer" | "table"), or None when it does not apply
    there (CAMs need a layer; exact Shapley needs few players). Sampled coalition methods get a budget of
    model evaluations proportional to the number of players (``n_players``: grid cells at the pixels, the
    layer's cells, the table's columns)."""
    return spec.quick_options(x, level, n_players=n_players, steps=S.steps, noise_samples=S.noise_samples,
                              grid_cells=S.grid_cells, max_exact_players=MAX_EXACT_PLAYERS,
                              per_player=S.game_per_player, skip_families=("attention",))   # the demo's nets have no attention


def layer_cells(model, x: torch.Tensor, layer: str) -> int:
    """Spatial positions of ``layer``'s activation (the players of a game at that layer)."""
    from ..core.modules import LayerTap, resolve_layer
    _, mod = resolve_layer(model, layer)
    with LayerTap(mod) as tap, torch.no_grad():
        model(x[:1])
        shape = tuple(tap.output.shape)
    return int(np.prod(shape[2:])) if len(shape) > 2 else int(shape[1])


def explain_all(model, batch: dict, S: Settings, seed: int, progress, notes: list,
                levels=("pixel", "layer")) -> tuple[list, dict]:
    """Every registered method at each level for both targets; failures are noted, not fatal."""
    from ..api import explain
    from ..experiments import last_conv_layer
    from ..registry import methods
    x = batch["x"]
    layer = last_conv_layer(model)
    cells = layer_cells(model, x, layer)
    attrs, timing = [], {}
    for name, spec in methods().items():
        for level in levels:
            opts = method_options(spec, x, level, S, cells if level == "layer" else None)
            if opts is None:
                continue
            kw = dict(opts, layer=layer) if level == "layer" else opts
            for k, target in enumerate(batch["targets"]):
                t = time.perf_counter()
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        a = explain(model, x, method=name, target=target, seed=seed, progress=progress, **kw)
                except Exception as err:            # noqa: BLE001 - one method must not stop the demo
                    notes.append(f"{name} at {level} level failed and was skipped: {' '.join(str(err).split())}")
                    break
                _note_warnings(caught, f"{name} at {level} level", notes)
                attrs.append(a)
                timing[(a.method, level, k)] = time.perf_counter() - t
    return attrs, timing


def explain_table(model, tab: dict, S: Settings, seed: int, progress, notes: list) -> tuple[list, list]:
    from ..api import explain
    from ..registry import methods
    x = tab["x"]
    with torch.no_grad():
        pred = model(x).argmax(1)
    background = tab["background"][:64]
    attrs, rows = [], []
    for name, spec in methods().items():
        opts = method_options(spec, x, "table", S, x.shape[1])
        if opts is None:
            continue
        if name == "gradient_shap":
            opts["baseline"] = background
        if name == "occlusion":
            continue                                   # a sliding window over unordered columns means nothing
        t = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                a = explain(model, x, method=name, target=pred, seed=seed, progress=progress, **opts)
        except Exception as err:                       # noqa: BLE001
            notes.append(f"{name} on the table failed and was skipped: {' '.join(str(err).split())}")
            continue
        _note_warnings(caught, f"{name} on the table", notes)
        attrs.append(a)
        row = {"method": a.method, "family": spec.family, "seconds": time.perf_counter() - t,
               "model evals": int(a.info.get("n_evals", 0))}
        row.update(error_figure(a))
        row["top features"] = ", ".join(_top_features(a, tab["features"], 3))
        rows.append(row)
    return attrs, rows


def method_order(a) -> tuple:
    rank = FIGURE_METHODS.index(a.method) if a.method in FIGURE_METHODS else len(FIGURE_METHODS)
    return rank, a.method, a.layer is not None


def _note_warnings(caught, where: str, notes: list) -> None:
    """Warnings raised while explaining go to the report's notes (once each), not to the terminal."""
    for w in caught:
        text = f"{where}: {' '.join(str(w.message).split())}"
        if text not in notes:
            notes.append(text)


def _top_features(a, names, k):
    from ..importance import global_importance
    imp = global_importance(a, names=names or None)
    return [str(n) for n in imp.ranking()[:k]]


def error_figure(a) -> dict:
    """The method's own error figure, averaged over samples (what says how far to trust the map)."""
    for key in ("completeness_gap", "relative_gap", "std_err", "delta", "r2"):
        if key in a.info:
            v = a.info[key]
            arr = np.abs(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64))
            ok = np.isfinite(arr)
            label = key if ok.all() else f"{key} ({int((~ok).sum())} of {arr.size} not estimable)"
            return {"error figure": label, "error value": float(arr[ok].mean()) if ok.any() else float("nan")}
    return {"error figure": "exact" if a.info.get("exact") else "", "error value": ""}
