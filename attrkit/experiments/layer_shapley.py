"""Figure 3.2 as numbers: Shapley values over the last conv layer's cells vs over pixel superpixels."""
from __future__ import annotations

import time

import numpy as np
import torch

from .common import last_conv_layer, load_model_and_data, one_bar
from .table import finish_table


@one_bar
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
    from ..api import explain
    from ..games.players import grid, superpixels as slic
    from ..metrics import pointing_game, relevance_mass
    from ..metrics._common import as_maps
    from ..metrics._stats import spearman
    from ..registry import methods as registered
    start = time.perf_counter()
    notes: list[str] = []
    if method not in registered():
        raise ValueError(f"{method!r} is not registered; layer_shapley_timing needs a Shapley estimator "
                         f"(available: {', '.join(m for m in registered() if 'shap' in m)})")
    net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
    x, masks = ds.x, ds.masks
    layer = last_conv_layer(net)
    with torch.inference_mode():
        act_shape = _layer_shape(net, x[:1], layer)
    cells = tuple(act_shape[2:])
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
    return finish_table(rows, "layer_shapley", f"Shapley values at the last conv layer vs pixel level (Figure 3.2, "
                        f"{method}, {n_samples} samples)", settings, start, notes, as_frame,
                        plot=_layer_shapley_plot)


def _layer_shapley_plot(t):
    """Seconds, agreement with the layer map and relevance mass: three units, three axes side by side."""
    from ..viz.curves import plot_panels
    return plot_panels(list(t), ["seconds", "spearman_vs_layer", "relevance_mass"], ("players", "level"),
                       titles={"seconds": "seconds (lower: faster)", "spearman_vs_layer":
                               "Spearman ρ vs the layer map", "relevance_mass": "relevance mass on the object"},
                       title=t.title)


def _layer_shape(model, x, layer):
    from ..core.modules import LayerTap, resolve_layer, eval_mode
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
