"""The demo's figures: Figure 3.1's grid, one grid per method family, deletion/insertion curves, sanity
cascades, the tabular plots, and their captions in the report."""
from __future__ import annotations

from pathlib import Path

import torch

from .settings import FIGURE_METHODS


def image_figures(model, batch, attrs, S, seed, out: Path, tables: dict, notes: list) -> dict:
    from .. import metrics as M
    from ..experiments import last_conv_layer
    from ..viz import plot_cascade, plot_curves, plot_grid
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
    from ..registry import methods
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
        from ..registry import get
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
    from ..importance import global_importance
    from ..viz import plot_beeswarm, plot_importance, plot_waterfall
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



def caption_of(p: Path) -> str:
    from .landscape import caption
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
