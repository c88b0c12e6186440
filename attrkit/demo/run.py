"""``run_demo``: load the zoo models, explain, evaluate, draw, write the report and ``summary.json``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from .batches import digits_batch, image_batch, table_batch
from .explaining import explain_all, explain_table, method_order
from .figures import caption_of, image_figures, table_figures
from .scores import best_methods, evaluate_images
from .settings import DIGITS_MODEL, FAST, FULL, IMAGE_MODEL, TABLE_MODEL, Settings


def run_demo(out="demo-out", fast: bool = False, seed: int = 0, progress: bool | None = None,
             log: Callable[[str], None] | None = print, threads: int | None = 1) -> dict:
    """Run the demo into folder ``out``; return a summary (paths, counts, timings, best methods).

    ``threads``: torch intra-op threads for the run (restored after). The demo's models are small, so one
    thread is the fastest: with two, the OpenMP threads spin-wait on every small operation (measured on
    2 shared cores: 48 s of CPU for the fast run's explanations with 2 threads, 5.6 s with 1). None keeps
    torch's setting."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    try:
        return _run(out, fast, seed, progress, log)
    finally:
        torch.set_num_threads(before)


def _run(out, fast: bool, seed: int, progress, log) -> dict:
    start = time.perf_counter()
    S = FAST if fast else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda s: None)
    torch.manual_seed(seed)
    notes: list[str] = []
    figures: dict[str, Path] = {}
    tables: dict[str, list] = {}
    items: list[dict] = []

    from .. import zoo
    say(f"attrkit demo ({'fast' if fast else 'full'}): zoo models from {zoo.weights_dir()} "
        f"(shipped weights, checked against their SHA-256)")
    t0 = time.perf_counter()
    img_model = zoo.pretrained(IMAGE_MODEL, progress=bool(progress))
    tab_model = zoo.pretrained(TABLE_MODEL, progress=bool(progress))
    models_s = time.perf_counter() - t0
    say(f"  models ready in {models_s:.1f} s: {IMAGE_MODEL} held-out accuracy "
        f"{img_model.meta.get('test_accuracy', float('nan')):.3f}, {TABLE_MODEL} "
        f"{tab_model.meta.get('test_accuracy', float('nan')):.3f}")

    # ------------------------------------------------------------------ images: shapes
    t0 = time.perf_counter()
    shapes = image_batch(zoo, img_model, S, seed)
    shape_attrs, timing = explain_all(img_model, shapes, S, seed, progress, notes)
    shape_attrs.sort(key=method_order)           # the thesis' methods first in the report's pickers
    say(f"  {IMAGE_MODEL}: {len(shapes['x'])} images, {len(shape_attrs)} maps from "
        f"{len({a.method for a in shape_attrs})} methods in {time.perf_counter() - t0:.1f} s")
    items += [{"attribution": a, "class_names": shapes["classes"], "sample_names": shapes["names"]}
              for a in shape_attrs]

    t0 = time.perf_counter()
    rows = evaluate_images(img_model, shapes, shape_attrs, timing, S, seed)
    tables["Image methods on shapes_cnn (one row per method and level; arrows say which way is better)"] = rows
    say(f"  evaluation tables in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    figures.update(image_figures(img_model, shapes, shape_attrs, S, seed, out, tables, notes))
    say(f"  figures in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ images: digits (full run)
    if S.digits:
        t0 = time.perf_counter()
        dig_model = zoo.pretrained(DIGITS_MODEL, progress=bool(progress))
        digits = digits_batch(zoo, dig_model, S)
        dig_attrs, _ = explain_all(dig_model, digits, S, seed, progress, notes, levels=("pixel", "layer"))
        dig_attrs.sort(key=method_order)
        items += [{"attribution": a, "class_names": digits["classes"], "sample_names": digits["names"]}
                  for a in dig_attrs]
        say(f"  {DIGITS_MODEL}: {len(digits['x'])} images, {len(dig_attrs)} maps in "
            f"{time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ tables: breast cancer
    t0 = time.perf_counter()
    tab = table_batch(zoo, tab_model, S)
    tab_attrs, tab_rows = explain_table(tab_model, tab, S, seed, progress, notes)
    tables["Tabular methods on breast_cancer_mlp"] = tab_rows
    figures.update(table_figures(tab_model, tab, tab_attrs, out, tables))
    k = S.rows_in_report
    items += [{"attribution": a.select(list(range(k))), "class_names": tab["classes"],
               "feature_names": tab["features"], "sample_names": tab["names"][:k]} for a in tab_attrs]
    say(f"  {TABLE_MODEL}: {len(tab['x'])} rows x {len(tab_attrs)} methods in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ thesis experiment (full run)
    if S.experiments:
        t0 = time.perf_counter()
        layer_shapley_experiment(tables, figures, out, notes, progress)
        say(f"  layer-level Shapley experiment in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ loss landscapes (the lecture's last figure)
    t0 = time.perf_counter()
    from .landscape import landscape_figures
    figures.update(landscape_figures(out, fast, seed, notes, tables, progress=progress))
    say(f"  loss landscapes in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ report
    from ..html_report import report
    seconds = time.perf_counter() - start
    best = best_methods(rows)
    notes = settings_notes(S, fast, seconds, models_s) + notes
    path = report(items, out / "report.html", title="attrkit demo: what the models look at",
                  tables=tables, figures={caption_of(p): p for p in figures.values()}, notes=notes)
    summary = {
        "report": str(path), "figures": [str(p) for p in figures.values()], "seconds": round(seconds, 1),
        "fast": fast, "maps": sum(len(it["attribution"]) for it in items),
        "methods": sorted({a.method for a in shape_attrs + tab_attrs}),
        "models": {IMAGE_MODEL: img_model.meta.get("test_accuracy"), TABLE_MODEL: tab_model.meta.get("test_accuracy")},
        "best": best, "skipped": [n for n in notes if "skipped" in n or "failed" in n],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    say(f"  {len(summary['methods'])} methods, {summary['maps']} maps, {len(figures)} figures, "
        f"{seconds:.0f} s in all")
    for key, (method, value) in best.items():
        say(f"  best {key}: {method} ({value:.3f})")
    return summary



def layer_shapley_experiment(tables, figures, out: Path, notes, progress):
    try:
        from .. import experiments
        t = experiments.layer_shapley_timing(n=1, progress=progress)
    except Exception as err:                           # noqa: BLE001
        notes.append(f"the layer-level Shapley experiment failed and was skipped: {' '.join(str(err).split())}")
        return
    tables[t.title or "Shapley values at a layer vs at the pixels"] = list(t)
    try:
        p = out / "layer_shapley.png"
        t.figure(p)
        if p.exists():
            figures["layer_shapley"] = p
    except Exception as err:                           # noqa: BLE001
        notes.append(f"layer-Shapley figure skipped: {err}")



def settings_notes(S: Settings, fast: bool, seconds: float, models_s: float) -> list[str]:
    return [f"Settings ({'fast' if fast else 'full'} run): Integrated Gradients {S.steps} points, SmoothGrad & co. "
            f"{S.noise_samples} noisy copies, coalition methods {S.game_per_player} model evaluations per player "
            f"(sampled Shapley twice that) over a "
            f"{S.grid_cells}x{S.grid_cells} grid of pixel cells (exact Shapley: 3x3), deletion/insertion "
            f"{S.curve_steps} steps" + ("" if S.curves_at_layer else " (pixel-level maps only in the fast run)")
            + ". Layer-level maps use the last convolutional layer.",
            f"The run took {seconds:.0f} s, of which {models_s:.0f} s to train or load the models."]
