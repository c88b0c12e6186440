"""Figure 3.1 as numbers: class specificity of maps at pixel level and at the last conv layer."""
from __future__ import annotations

import time

import numpy as np
import torch

from .common import explain_pair, held_out, last_conv_layer, levels, load_model_and_data, log, one_bar, random_attr
from .presets import available_methods, method_options
from .table import bar_plot, finish_table


@one_bar
def class_specificity_table(n: int = 16, model: str = "shapes_cnn", methods=None, *, seed: int = 0,
                            batch_size: int | None = None, progress: bool | None = None,
                            as_frame: bool = False):
    """Figure 3.1 as numbers. On ``n`` two-object images (``data.shapes_pairs``, unseen seed) every method is
    computed at pixel level and at the last conv layer for class A (the present class the model scores higher,
    the thesis' "beagle") and for class B (the other present class, its "egyptian cat"). Columns: ``pointing_a``/
    ``pointing_b`` (the map's maximum on the right object), ``mass_a``/``mass_b`` (share of positive relevance
    on the right object), ``mass_wrong`` (mean share on the other object), ``rank_corr_ab`` (Spearman between
    the two maps: 1 = the same map whatever the class), ``seconds``. A random map is the chance reference."""
    from ..metrics import class_specificity
    start = time.perf_counter()
    notes: list[str] = []
    net, _ = load_model_and_data(model, n=1, seed=seed, progress=progress)
    ds = held_out("shapes_pairs", n, seed, net)
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
    rnd = [random_attr(x, seed), random_attr(x, seed + 1)]
    r = class_specificity(net, x, y, masks, tuple(rnd))
    rows.append(cs_row("random (chance)", "pixel", None, r, 0.0))
    for m in available_methods(methods, notes):
        for level, layer in levels(net):
            opts = method_options(m, x, level, seed)
            if opts is None:
                continue
            t0 = time.perf_counter()
            try:
                pair = explain_pair(net, x, m, (y[:, 0], y[:, 1]), layer, opts, batch_size, progress)
                r = class_specificity(net, x, y, masks, tuple(pair))
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            rows.append(cs_row(m, level, layer, r, time.perf_counter() - t0))
    settings = {"model": model, "images": n, "data": "shapes_pairs(seed=10000+seed)", "seed": seed,
                "layer": last_conv_layer(net), "A": "the present class with the higher logit",
                "top1_is_A": round(top1, 3), "top2_are_A_and_B": round(both, 3)}
    return finish_table(rows, "class_specificity", "Class specificity (Figure 3.1): pixel level vs last conv layer",
                        settings, start, notes, as_frame,
                        plot=lambda t: bar_plot(t, ["pointing_a", "pointing_b", "mass_a", "mass_b"]))


def cs_row(method, level, layer, r, seconds):
    d = r.details
    return {"method": method, "level": level, "pointing_a": d["pointing_a_mean"], "pointing_b": d["pointing_b_mean"],
            "mass_a": d["mass_a_mean"], "mass_b": d["mass_b_mean"],
            "mass_wrong": float(np.nanmean([d["mass_a_on_b_mean"], d["mass_b_on_a_mean"]])),
            "rank_corr_ab": r.score, "seconds": seconds}
