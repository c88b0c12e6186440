"""The demo's closing figures: the loss landscape of every zoo model around its shipped weights (Li et al. 2018;
:func:`attrkit.loss_landscape`), on a small grid over a few hundred training rows so the demo stays fast."""
from __future__ import annotations

import time
from pathlib import Path

FIGURE_DPI = 80          # the report embeds these PNGs: small files keep it under its size budget


def landscape_figures(out: Path, fast: bool, seed: int, notes: list, tables: dict, progress=None,
                      models: list[str] | None = None) -> dict:
    """One ``landscape_<model>.png`` per zoo model (a 2-D grid in the full run, a 1-D curve in the fast run);
    a table row per model (loss at the weights, the grid's range, seconds). Failures become notes."""
    from .. import zoo
    from ..landscape import loss_landscape
    names = models if models is not None else (["shapes_cnn", "breast_cancer_mlp"] if fast else zoo.names())
    steps, directions = (7, 1) if fast else (7, 2)
    figs: dict[str, Path] = {}
    table = []
    for name in names:
        t0 = time.perf_counter()
        try:
            model = zoo.pretrained(name)
            data = zoo.dataset(name, "train")
            first = data.x[0] if isinstance(data.x, tuple) else data.x
            rows = 64 if first.dim() >= 4 else 256             # images cost more per row: fewer of them
            x = tuple(t[:rows] for t in data.x) if isinstance(data.x, tuple) else data.x[:rows]
            ls = loss_landscape(model, (x, data.y[:rows]), directions=directions, steps=steps, span=1.0,
                                seed=seed, progress=progress)
            p = out / f"landscape_{name}.png"
            fig = ls.plot(title=f"{name}: {ls.loss_name} loss around the shipped weights "
                                f"({int(data.y[:rows].shape[0])} training rows)", log=directions == 2)
            p.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(p, dpi=FIGURE_DPI, facecolor="white")
            figs[f"landscape_{name}"] = p
            table.append({"model": name, "loss": ls.loss_name, "at the weights": round(ls.center, 4),
                          "grid min": round(float(ls.loss.min()), 4), "grid max": round(float(ls.loss.max()), 4),
                          "grid": "x".join(str(s) for s in ls.loss.shape), "seconds": round(time.perf_counter() - t0, 2)})
        except Exception as err:                      # noqa: BLE001 - one model's failure is a note, not the demo's
            notes.append(f"the loss landscape of {name} failed and was skipped: {' '.join(str(err).split())}")
    if table:
        tables["Loss landscapes (Li et al. 2018): the loss along random filter-normalised directions around each "
               "zoo model's weights"] = table
    return figs


def caption(stem: str) -> str | None:
    if not stem.startswith("landscape_"):
        return None
    return (f"Loss landscape of {stem[len('landscape_'):]}: the training loss along random filter-normalised "
            "directions around the shipped weights (Li et al. 2018; the cross marks the weights)")
