"""The thesis' question "what makes a good reference?": Integrated Gradients with each baseline."""
from __future__ import annotations

import time

import numpy as np

from .common import load_model_and_data, one_bar
from .table import bar_plot, finish_table


@one_bar
def reference_choice_table(n: int = 16, model: str = "shapes_cnn", *, baselines=("zeros", "mean", "blur", "noise"),
                           steps: int = 32, curve_steps: int = 16, seed: int = 0, batch_size: int | None = None,
                           progress: bool | None = None, as_frame: bool = False):
    """The thesis' question "what makes a good reference?" (section 2.3): Integrated Gradients with each
    baseline. Columns: the mean relative completeness gap, deletion AUC with the baseline as the masker
    (``deletion_own``) and with zeros (``deletion_zeros``), insertion AUC from a blurred copy, relevance mass
    and pointing game on the object mask, and the mean Spearman correlation of the maps with those of each
    other baseline (``rho_<baseline>``)."""
    from ..api import explain
    from ..metrics import completeness, deletion, insertion, pointing_game, relevance_mass
    from ..metrics._common import as_maps
    from ..metrics._stats import spearman
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
    return finish_table(rows, "reference_choice", "Integrated Gradients: choice of the reference", settings,
                        start, [], as_frame,
                        plot=lambda t: bar_plot(t, ["deletion_own", "deletion_zeros", "insertion_blur",
                                                     "relevance_mass"]))
