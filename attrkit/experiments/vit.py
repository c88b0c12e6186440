"""Figure 3.1's question for a vision transformer: pixel level vs token level, class A vs class B.

:func:`vit_specificity_table` explains the zoo's ``shapes_vit`` on held-out two-object images
(``data.shapes_pairs``, seed ``10000 + seed``) for class A (the present class the model scores higher) and class B
(the other present class) and scores each map with the object masks: ``pointing_a`` / ``pointing_b`` (the map's
maximum on the right object), ``mass_a`` / ``mass_b`` (share of positive relevance on it), ``rank_corr_ab``
(Spearman between the A and B maps; 1 = the same map whatever the class). Levels: ``pixel`` (input),
``token`` (the patch tokens after block k, k = the automatic layer: the last block whose patch tokens reach the
class token), ``attention`` (rollout and Chefer's relevance, over all blocks). A random map is the chance row.

``python -m attrkit.experiments vit_specificity --out docs/`` writes the section at the end of
``docs/results.md`` (between markers, replacing its previous version).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .common import random_attr
from .results import marked_section, replace_marked_section
from .specificity import cs_row
from .table import Table

START, END = "<!-- vit-specificity:start -->", "<!-- vit-specificity:end -->"
COMMAND = "python -m attrkit.experiments vit_specificity --out docs/"
TITLE = "Vision transformer (shapes_vit): class specificity at pixel, token and attention level"

# (method, level, options); level "token" runs at the automatic layer
METHODS = [
    ("saliency", "pixel", {}),
    ("input_x_gradient", "pixel", {}),
    ("integrated_gradients", "pixel", {"steps": 16}),
    ("attn_lrp", "pixel", {"softmax": "attnlrp"}),
    ("attn_lrp", "pixel", {"softmax": "constant"}),
    ("integrated_gradients", "token", {"steps": 16}),
    ("grad_cam", "token", {}),
    ("hires_cam", "token", {}),
    ("layer_cam", "token", {}),
    ("feature_ablation", "token", {}),
    ("kernel_shap", "token", {"n_samples": 256, "seed": 0}),
    ("attention_rollout", "attention", {}),
    ("attention_relevance", "attention", {}),
]


def vit_specificity_table(n: int = 32, model: str = "shapes_vit", *, seed: int = 0, net=None,
                          progress: bool | None = None) -> Table:
    """The table described in the module docstring (``net``: use this model instead of the zoo's)."""
    from .. import data as D
    from .. import zoo
    from ..api import explain
    from ..metrics import class_specificity
    start = time.perf_counter()
    if net is None:
        net = zoo.pretrained(model, progress=bool(progress))
    net.eval()
    size = int(net.config.get("in_size", 64)) if isinstance(getattr(net, "config", None), dict) else 64
    ds = D.shapes_pairs(n=n, size=size, seed=10_000 + seed, progress=False)
    x, y, masks = ds.x, ds.y, ds.masks
    with torch.inference_mode():
        out = net(x)
    swap = out.gather(1, y[:, 1:2]).squeeze(1) > out.gather(1, y[:, 0:1]).squeeze(1)
    y = torch.where(swap.unsqueeze(1), y.flip(1), y)
    top1 = float((out.argmax(1) == y[:, 0]).float().mean())
    from ..core.auto_layer import choose_layer
    rows, notes = [], []
    layer = choose_layer(net, x[:1], what="the token level").name
    r = class_specificity(net, x, y, masks, (random_attr(x, seed), random_attr(x, seed + 1)))
    rows.append(cs_row("random (chance)", "pixel", None, r, 0.0))
    for name, level, opts in METHODS:
        t0 = time.perf_counter()
        kw = dict(opts)
        if level == "token":
            kw["layer"] = layer
        try:
            pair = [explain(net, x, name, target=t, progress=progress, **kw) for t in (y[:, 0], y[:, 1])]
        except (ValueError, TypeError, RuntimeError) as err:
            notes.append(f"{name} ({level}): skipped - {err}")
            continue
        r = class_specificity(net, x, y, masks, tuple(pair))
        if name == "attn_lrp":
            gaps = torch.cat([torch.as_tensor(p.info["relative_gap"]).flatten() for p in pair])
            from ..transformers.budget import relevance_budget
            closed = relevance_budget(net, x, y[:, 0], opts["softmax"])["gap"]      # (untimed)
            notes.append(f"attn_lrp softmax={opts['softmax']}: relative completeness gap |sum R - f(x)| / |f(x)| "
                         f"median {float(gaps.median()):.3g} (biases take relevance"
                         + ("; so does the softmax under the paper's rule" if opts["softmax"] == "attnlrp" else "")
                         + f"); counting what they take (budget=True) the sum closes to {float(closed.max()):.1g}")
        label = name + (f" (softmax={opts['softmax']})" if "softmax" in opts else "")
        rows.append(cs_row(label, level, layer if level == "token" else None, r, time.perf_counter() - t0))
    layer_rows = [r for r in rows if r["level"] in ("token", "attention")]
    if layer_rows:
        best = max(layer_rows, key=lambda r: min(r["pointing_a"], r["pointing_b"]))
        ok = min(best["pointing_a"], best["pointing_b"]) >= 0.8
        notes.insert(0, f"the thesis' claim (layer-level methods point at the right object for both classes, "
                        f">= 0.8) {'holds' if ok else 'fails here'}: best token/attention-level method {best['method']} "
                        f"with pointing A {best['pointing_a']:.2f}, B {best['pointing_b']:.2f}")
    settings = {"model": model, "images": n, "data": "shapes_pairs(seed=10000+seed)", "seed": seed,
                "token_layer": layer, "A": "the present class with the higher logit", "top1_is_A": round(top1, 3)}
    meta = getattr(net, "meta", None) or {}
    if "test_accuracy" in meta:
        settings["test_accuracy"] = round(float(meta["test_accuracy"]), 3)
    t = Table(rows, name="vit_specificity", title=TITLE, settings=settings, seconds=time.perf_counter() - start,
              notes=notes)
    t.description = " ".join((__doc__ or "").split("\n\n")[1].split())
    return t


SANITY = [("attention_relevance", {}), ("attn_lrp", {}), ("grad_cam", {}), ("attention_rollout", {}),
          ("integrated_gradients", {"steps": 16})]


def vit_sanity_table(n: int = 8, model: str = "shapes_vit", *, seed: int = 0, net=None) -> Table:
    """Cascading randomisation (Adebayo et al. 2018) of the ViT's parametrised layers, top first: Spearman
    correlation of |map| with the original after the head, after every transformer block, after every layer
    (1 = the map ignores the weights)."""
    from .. import data as D
    from .. import zoo
    from ..metrics import model_randomisation
    start = time.perf_counter()
    net = zoo.pretrained(model, progress=False) if net is None else net
    x = D.shapes(n=n, size=64, seed=10_000 + seed, progress=False).x
    rows = []
    for name, opts in SANITY:
        r = model_randomisation(net, x, name, mode="cascading", seed=seed, progress=False, keep_maps=False, **opts)
        stages = r.rows()
        blocks = [s for s in stages if str(s["layer"]).startswith("blocks.")]
        rows.append({"method": name, "after_head": stages[0]["spearman_abs"],
                     "after_blocks": blocks[-1]["spearman_abs"] if blocks else float("nan"),
                     "after_all": stages[-1]["spearman_abs"]})
    t = Table(rows, name="vit_sanity", title="Sanity check on shapes_vit (cascading randomisation)",
              settings={"model": model, "images": n, "seed": seed}, seconds=time.perf_counter() - start)
    t.description = " ".join((vit_sanity_table.__doc__ or "").split())
    return t



def section_markdown(table: Table, sanity: Table | None = None) -> str:
    """The section as written into ``docs/results.md`` (with its markers; the sanity table after the notes)."""
    extra = [] if sanity is None else [f"### {sanity.title}", "", sanity.description, "",
                                       f"Run time: {sanity.seconds:.1f} s.", "", sanity.to_markdown(header=False), ""]
    return marked_section(table, START, END, COMMAND, extra)


def write_section(table: Table, path, sanity: Table | None = None) -> Path:
    """Put the ViT section at the end of ``path`` (``results.md``), replacing an earlier version of it."""
    return replace_marked_section(path, START, END, section_markdown(table, sanity))


def vit_section(out=None, *, quick: bool = False, n: int | None = None, progress: bool | None = False):
    """Compute the specificity table (``n`` images, default 32; ``quick``: 4) and the sanity table (``quick``:
    2 images) and, with ``out``, write their section into ``out/results.md``. Returns (the Markdown, the file
    written or None)."""
    t = vit_specificity_table(n=4 if quick else n or 32, progress=progress)
    s = vit_sanity_table(n=2) if quick else vit_sanity_table()
    return section_markdown(t, s), (write_section(t, Path(out) / "results.md", s) if out is not None else None)
