"""The main job (``attrkit demo`` / ``make demo``): every method on the built-in models, evaluated, in one report.

1. Load the zoo's shipped weights (``attrkit/zoo_weights``, checksummed) of ``shapes_cnn`` (64 px images of five shapes)
   and ``breast_cancer_mlp`` (30 tabular features); the default run adds ``digits_cnn``.
2. Explain held-out images (one object each, plus images holding two objects of different classes, as in the
   thesis' Figure 3.1) with every registered method (``ak.methods()``) at the input pixels and at the last
   convolutional layer, for two classes per image (the predicted and the runner-up class; both objects'
   classes on two-object images); explain held-out table rows with every method that takes tables.
3. Evaluate: deletion / insertion areas, pointing game and relevance mass on the true object masks, class
   specificity on two-object images, cascading-randomisation sanity checks, each method's own error figure.
4. Write ``report.html`` (self-contained) and PNG figures to the output folder; return a summary.

``fast=True`` uses fewer samples and smaller budgets (under 2 minutes on 2 CPU cores once the models are
cached); the default takes a few minutes.
"""
from __future__ import annotations

import inspect
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class Settings:
    n_single: int          # held-out one-object images
    n_pairs: int           # two-object images (Figure 3.1)
    n_rows: int            # held-out table rows explained
    rows_in_report: int    # of which shown one by one in the report
    steps: int             # Integrated Gradients points
    noise_samples: int     # SmoothGrad & co.
    game_per_player: int   # KernelSHAP / LIME evaluations per player (sampled Shapley: twice that)
    grid_cells: int        # pixel-level players: a grid of cells x cells
    curve_steps: int       # deletion / insertion points
    curves_at_layer: bool  # deletion / insertion also for layer-level maps
    sanity: tuple          # methods checked by cascading randomisation
    digits: bool           # also explain the digits model
    experiments: bool      # also run attrkit.experiments' layer-Shapley timing


FAST = Settings(n_single=1, n_pairs=1, n_rows=40, rows_in_report=6, steps=16, noise_samples=8, game_per_player=4,
                grid_cells=8, curve_steps=8, curves_at_layer=False, sanity=("saliency", "grad_cam"), digits=False, experiments=False)
FULL = Settings(n_single=4, n_pairs=2, n_rows=114, rows_in_report=12, steps=32, noise_samples=16,
                game_per_player=16, grid_cells=8, curve_steps=16, curves_at_layer=True,
                sanity=("saliency", "integrated_gradients", "guided_backprop", "grad_cam"), digits=True,
                experiments=True)

IMAGE_MODEL, TABLE_MODEL, DIGITS_MODEL = "shapes_cnn", "breast_cancer_mlp", "digits_cnn"
# the methods of the thesis' figures, drawn in Figure 3.1's grid (others are in the family figures and report)
FIGURE_METHODS = ("saliency", "integrated_gradients", "guided_backprop", "lrp", "grad_cam", "kernel_shap")
MAX_EXACT_PLAYERS = 12


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

    from . import zoo
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
    shapes = _image_batch(zoo, img_model, S, seed)
    shape_attrs, timing = explain_all(img_model, shapes, S, seed, progress, notes)
    shape_attrs.sort(key=_method_order)           # the thesis' methods first in the report's pickers
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
        digits = _digits_batch(zoo, dig_model, S)
        dig_attrs, _ = explain_all(dig_model, digits, S, seed, progress, notes, levels=("pixel", "layer"))
        dig_attrs.sort(key=_method_order)
        items += [{"attribution": a, "class_names": digits["classes"], "sample_names": digits["names"]}
                  for a in dig_attrs]
        say(f"  {DIGITS_MODEL}: {len(digits['x'])} images, {len(dig_attrs)} maps in "
            f"{time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ tables: breast cancer
    t0 = time.perf_counter()
    tab = _table_batch(zoo, tab_model, S)
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
        _experiments(tables, figures, out, notes, progress)
        say(f"  layer-level Shapley experiment in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ loss landscapes (the lecture's last figure)
    t0 = time.perf_counter()
    from .demo_landscape import landscape_figures
    figures.update(landscape_figures(out, fast, seed, notes, tables, progress=progress))
    say(f"  loss landscapes in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ report
    from .html_report import report
    seconds = time.perf_counter() - start
    best = _best(rows)
    notes = _notes(S, fast, seconds, models_s) + notes
    path = report(items, out / "report.html", title="attrkit demo: what the models look at",
                  tables=tables, figures={_caption(p): p for p in figures.values()}, notes=notes)
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


# ============================================================================================ data
def _image_batch(zoo, model, S: Settings, seed: int) -> dict:
    """Held-out one-object images (the zoo's test split) and fresh two-object images; two targets each."""
    from .data import shapes_pairs
    test = zoo.dataset(IMAGE_MODEL)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=g)[:S.n_single].tolist()
    single = test.subset(idx)
    size = int(single.x.shape[-1])
    pairs = shapes_pairs(n=S.n_pairs, size=size, seed=10_000 + seed, progress=False)
    classes = list(test.classes)
    x = torch.cat([single.x, pairs.x])
    with torch.no_grad():
        out = model(x)
    top2 = out.topk(2, dim=1).indices
    ns = S.n_single
    target_a = torch.cat([top2[:ns, 0], pairs.y[:, 0]])
    target_b = torch.cat([top2[:ns, 1], pairs.y[:, 1]])
    names = [f"held-out {classes[int(c)]} #{i + 1}" for i, c in enumerate(single.y)] + \
            [f"two objects: {classes[int(a)]} + {classes[int(b)]}" for a, b in pairs.y]
    # ground-truth masks [N, C, H, W]: one-object images put their mask under their class
    masks = torch.zeros(len(x), len(classes), size, size, dtype=torch.bool)
    for i in range(ns):
        masks[i, int(single.y[i])] = single.masks[i, 0]
    masks[ns:] = pairs.masks.bool()
    return {"x": x, "targets": (target_a, target_b), "names": names, "classes": classes, "masks": masks,
            "n_single": ns, "pair_classes": pairs.y, "labels": torch.cat([single.y, pairs.y[:, 0]])}


def _digits_batch(zoo, model, S: Settings) -> dict:
    test = zoo.dataset(DIGITS_MODEL)
    d = test.subset(list(range(S.n_single)))
    with torch.no_grad():
        top2 = model(d.x).topk(2, dim=1).indices
    classes = [str(c) for c in (test.classes or range(10))]
    return {"x": d.x, "targets": (top2[:, 0], top2[:, 1]), "classes": classes, "masks": None, "n_single": len(d),
            "names": [f"digit {classes[int(c)]} #{i + 1}" for i, c in enumerate(d.y)]}


def _table_batch(zoo, model, S: Settings) -> dict:
    test = zoo.dataset(TABLE_MODEL)
    n = min(S.n_rows, len(test))
    d = test.subset(list(range(n)))
    classes = list(test.classes or ["0", "1"])
    return {"x": d.x, "y": d.y, "classes": classes, "features": list(test.feature_names or []),
            "names": [f"patient {i + 1} ({classes[int(c)]})" for i, c in enumerate(d.y)],
            "background": zoo.dataset(TABLE_MODEL, "train").x, "meta": test.meta}


# ============================================================================================ explain
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
    from .core.modules import LayerTap, resolve_layer
    _, mod = resolve_layer(model, layer)
    with LayerTap(mod) as tap, torch.no_grad():
        model(x[:1])
        shape = tuple(tap.output.shape)
    return int(np.prod(shape[2:])) if len(shape) > 2 else int(shape[1])


def explain_all(model, batch: dict, S: Settings, seed: int, progress, notes: list,
                levels=("pixel", "layer")) -> tuple[list, dict]:
    """Every registered method at each level for both targets; failures are noted, not fatal."""
    from .api import explain
    from .experiments import last_conv_layer
    from .registry import methods
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
    from .api import explain
    from .registry import methods
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
        row.update(_error_figure(a))
        row["top features"] = ", ".join(_top_features(a, tab["features"], 3))
        rows.append(row)
    return attrs, rows


def _method_order(a) -> tuple:
    rank = FIGURE_METHODS.index(a.method) if a.method in FIGURE_METHODS else len(FIGURE_METHODS)
    return rank, a.method, a.layer is not None


def _note_warnings(caught, where: str, notes: list) -> None:
    """Warnings raised while explaining go to the report's notes (once each), not to the terminal."""
    for w in caught:
        text = f"{where}: {' '.join(str(w.message).split())}"
        if text not in notes:
            notes.append(text)


def _top_features(a, names, k):
    from .importance import global_importance
    imp = global_importance(a, names=names or None)
    return [str(n) for n in imp.ranking()[:k]]


def _error_figure(a) -> dict:
    """The method's own error figure, averaged over samples (what says how far to trust the map)."""
    for key in ("completeness_gap", "relative_gap", "std_err", "delta", "r2"):
        if key in a.info:
            v = a.info[key]
            arr = np.abs(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64))
            ok = np.isfinite(arr)
            label = key if ok.all() else f"{key} ({int((~ok).sum())} of {arr.size} not estimable)"
            return {"error figure": label, "error value": float(arr[ok].mean()) if ok.any() else float("nan")}
    return {"error figure": "exact" if a.info.get("exact") else "", "error value": ""}


# ============================================================================================ evaluate
def evaluate_images(model, batch: dict, attrs: list, timing: dict, S: Settings, seed: int) -> list[dict]:
    """One row per (method, level): cost, deletion/insertion areas, localisation, class specificity."""
    from . import metrics as M
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
        row.update(_error_figure(a))
        row["_curves"] = (d, ins)
        rows.append(row)
    return rows


def _best(rows: list[dict]) -> dict:
    out = {}
    for key, sign in (("deletion area ↓", 1), ("insertion area ↑", -1), ("relevance mass ↑", -1)):
        vals = [(r[key], r["method"] + (f" @ {r['level']}" if r["level"] != "pixels" else ""))
                for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
        if vals:
            v, m = min(vals, key=lambda t: sign * t[0])
            out[key.split(" ")[0] + " " + key.split(" ")[1]] = (m, v)
    return out


# ============================================================================================ figures
def image_figures(model, batch, attrs, S, seed, out: Path, tables: dict, notes: list) -> dict:
    from . import metrics as M
    from .experiments import last_conv_layer
    from .viz import plot_cascade, plot_curves, plot_grid
    figs: dict[str, Path] = {}
    classes, ns = batch["classes"], batch["n_single"]
    ta = batch["targets"][0]
    # Figure 3.1: a two-object image, both classes, pixels vs last conv layer, the thesis' methods
    if len(batch["x"]) > ns:
        chosen = [a for a in attrs if a.method in FIGURE_METHODS]
        chosen.sort(key=lambda a: FIGURE_METHODS.index(a.method))
        p = out / "figure_3_1_classes_x_layers.png"
        plot_grid(chosen, rows=("layer", "target"), cols="method", index=ns, class_names=classes,
                  title=f"{batch['names'][ns]}: each method's map for each object's class, "
                        f"at the pixels and at the last conv layer", path=p)
        figs["fig31"] = p
    # one figure per family on the first image, its predicted class
    families: dict[str, list] = {}
    from .registry import methods
    reg = methods()
    for a in attrs:
        base = a.method.split("(")[-1].rstrip(")") if "(" in a.method else a.method
        fam = reg[base].family if base in reg else "other"
        if torch.equal(torch.as_tensor(a.target), ta):
            families.setdefault(fam, []).append(a)
    for fam, group in families.items():
        p = out / f"methods_{fam}.png"
        plot_grid(group, rows="layer", cols="method", index=0, class_names=classes,
                  title=f"{fam} methods on {batch['names'][0]} (class '{classes[int(ta[0])]}')", path=p)
        figs[f"fam_{fam}"] = p
    # deletion and insertion curves at pixel level
    rows = next(iter(tables.values()))
    pix = [r for r in rows if r["level"] == "pixels" and r["_curves"][0] is not None]
    pick = [r for r in pix if r["method"] in FIGURE_METHODS] or pix[:6]
    if pick:
        p = out / "deletion_curves.png"
        plot_curves({r["method"]: r["_curves"][0] for r in pick}, kind="deletion",
                    ylabel="probability of the explained class", path=p)
        figs["deletion"] = p
        p = out / "insertion_curves.png"
        plot_curves({r["method"]: r["_curves"][1] for r in pick}, kind="insertion",
                    ylabel="probability of the explained class", path=p)
        figs["insertion"] = p
    for r in rows:
        r.pop("_curves", None)
    # sanity checks: cascading randomisation on the first image
    sanity_rows = []
    layer = last_conv_layer(model)
    for name in S.sanity:
        from .registry import get
        try:
            spec = get(name)
        except ValueError:
            notes.append(f"sanity check of {name} skipped: the method is not registered")
            continue
        kw = {"steps": S.steps} if name == "integrated_gradients" else {}
        if spec.layer == "required":
            kw["layer"] = layer
        try:
            res = M.cascading_randomisation(model, batch["x"][:1], name, target=ta[:1], seed=seed, progress=False,
                                            **kw)
        except Exception as err:                       # noqa: BLE001
            notes.append(f"sanity check of {name} failed and was skipped: {' '.join(str(err).split())}")
            continue
        p = out / f"sanity_{name}.png"
        plot_cascade(res, index=0, image=batch["x"][0], path=p)
        figs[f"sanity_{name}"] = p
        for row in res.rows():
            sanity_rows.append({"method": name, **{k: v for k, v in row.items() if k != "fraction_randomised"}})
    if sanity_rows:
        tables["Sanity check: similarity to the original map as layers are randomised from the top "
               "(near 1 = the map ignores the weights)"] = sanity_rows
    return figs


def table_figures(model, tab, attrs, out: Path, tables: dict) -> dict:
    from .importance import global_importance
    from .viz import plot_beeswarm, plot_importance, plot_waterfall
    figs = {}
    by = {a.method: a for a in attrs}
    names = tab["features"] or None
    main = by.get("kernel_shap") or by.get("integrated_gradients") or (attrs[0] if attrs else None)
    if main is None:
        return figs
    imp = global_importance(main, names=names)
    p = out / "table_importance.png"
    plot_importance(imp, names, top=15, title=f"global importance ({main.method}, {imp.n} held-out patients)",
                    path=p)
    figs["importance"] = p
    tables[f"Global importance on breast_cancer_mlp ({main.method})"] = imp.table()[:15]
    swarm = by.get("integrated_gradients") or main
    p = out / "table_beeswarm.png"
    plot_beeswarm(swarm, names=names, top=12, title=f"{swarm.method}: each dot is a patient", path=p)
    figs["beeswarm"] = p
    p = out / "table_waterfall.png"
    meta = tab.get("meta") or {}
    unscale = (lambda z: z * meta["std"] + meta["mean"]) if "mean" in meta and "std" in meta else None  # raw units
    plot_waterfall(main, 0, names, top=8, model=model, class_names=tab["classes"], raw=unscale, path=p)
    figs["waterfall"] = p
    return figs


def _experiments(tables, figures, out: Path, notes, progress):
    try:
        from . import experiments
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


def _caption(p: Path) -> str:
    from .demo_landscape import caption
    if caption(p.stem):
        return caption(p.stem)
    return {"figure_3_1_classes_x_layers": "The thesis' Figure 3.1 layout: each method's map for each object's "
            "class, at the pixels (top rows) and at the last convolutional layer (bottom rows). The thesis found "
            "that pixel-level gradient maps light up both objects whatever the class; compare the rows here, and "
            "the column 'same map for both classes (ρ)' of the table for the numbers",
            "deletion_curves": "Deletion: remove the most-attributed pixels first; the faster the score falls, "
            "the better the map found what the model needs",
            "insertion_curves": "Insertion: start from a blurred image and restore the most-attributed pixels "
            "first; the faster the score rises, the better",
            "table_importance": "Tabular model: which features matter most on average (95% intervals)",
            "table_beeswarm": "Tabular model: each feature's attribution for every patient, coloured by the "
            "feature's value",
            "table_waterfall": "One patient's prediction, feature by feature",
            "layer_shapley": "Shapley values at a layer vs at the pixels: time and agreement"}.get(
        p.stem, p.stem.replace("_", " "))


def _notes(S: Settings, fast: bool, seconds: float, models_s: float) -> list[str]:
    return [f"Settings ({'fast' if fast else 'full'} run): Integrated Gradients {S.steps} points, SmoothGrad & co. "
            f"{S.noise_samples} noisy copies, coalition methods {S.game_per_player} model evaluations per player "
            f"(sampled Shapley twice that) over a "
            f"{S.grid_cells}x{S.grid_cells} grid of pixel cells (exact Shapley: 3x3), deletion/insertion "
            f"{S.curve_steps} steps" + ("" if S.curves_at_layer else " (pixel-level maps only in the fast run)")
            + ". Layer-level maps use the last convolutional layer.",
            f"The run took {seconds:.0f} s, of which {models_s:.0f} s to train or load the models."]
