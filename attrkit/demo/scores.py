"""The demo's evaluation table: per method and level, cost, deletion/insertion areas, localisation, class
specificity and the method's error figure; the best method per score."""
from __future__ import annotations

import math

import torch

from .explaining import error_figure
from .settings import Settings


def evaluate_images(model, batch: dict, attrs: list, timing: dict, S: Settings, seed: int) -> list[dict]:
    """One row per (method, level): cost, deletion/insertion areas, localisation, class specificity."""
    from .. import metrics as M
    x, masks, ns = batch["x"], batch["masks"], batch["n_single"]
    ta, tb = batch["targets"]
    by_key: dict = {}
    for a in attrs:
        k = 0 if torch.equal(torch.as_tensor(a.target), ta) else 1
        by_key[(a.method, a.layer, k)] = a
    rows = []
    rows_idx = torch.arange(len(x))
    for (method, layer, k), a in by_key.items():
        if k != 0:
            continue
        level = "layer" if layer else "pixel"
        row = {"method": method, "level": f"layer {layer}" if layer else "pixels",
               "seconds": timing.get((method, level, 0), float("nan")),
               "model evals": int(a.info.get("n_evals", 0))}
        d = ins = None
        if level == "pixel" or S.curves_at_layer:
            d = M.deletion(model, x, a, target=ta, steps=S.curve_steps, seed=seed, progress=False)
            ins = M.insertion(model, x, a, target=ta, steps=S.curve_steps, seed=seed, progress=False)
        row["deletion area ↓"] = d.score if d is not None else ""
        row["insertion area ↑"] = ins.score if ins is not None else ""
        target_masks = masks[rows_idx, ta.long()]
        row["pointing game ↑"] = M.pointing_game(a, target_masks).score
        row["relevance mass ↑"] = M.relevance_mass(a, target_masks).score
        b = by_key.get((method, layer, 1))
        if b is not None and len(x) > ns:
            pair = list(range(ns, len(x)))
            cs = M.class_specificity(model, x[ns:], batch["pair_classes"], masks[ns:],
                                     method=(a.select(pair), b.select(pair)))
            row["same map for both classes (ρ) ↓"] = cs.score
        row.update(error_figure(a))
        row["_curves"] = (d, ins)
        rows.append(row)
    return rows


def best_methods(rows: list[dict]) -> dict:
    out = {}
    for key, sign in (("deletion area ↓", 1), ("insertion area ↑", -1), ("relevance mass ↑", -1)):
        vals = [(r[key], r["method"] + (f" @ {r['level']}" if r["level"] != "pixels" else ""))
                for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
        if vals:
            v, m = min(vals, key=lambda t: sign * t[0])
            out[key.split(" ")[0] + " " + key.split(" ")[1]] = (m, v)
    return out
