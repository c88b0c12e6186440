"""Figures 3.3/3.4 as numbers: how similar maps stay while the model's layers are randomised."""
from __future__ import annotations

import time

from .common import last_conv_layer, levels, load_model_and_data, log, one_bar
from .presets import available_methods, method_options
from .table import Table, finish_table

SANITY_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                  "deconvnet", "grad_cam", "lrp", "gradient_shap")


@one_bar
def sanity_table(n: int = 8, model: str = "shapes_cnn", methods=None, *, mode: str = "cascading", seed: int = 0,
                 batch_size: int | None = None, progress: bool | None = None, as_frame: bool = False):
    """Figures 3.3/3.4 as numbers: cascading (or independent) randomisation of the model's parametrised layers,
    top layer first, for each method at pixel level and at the last conv layer. One row per method, level and
    stage: the layer just randomised, the fraction of layers randomised, and the similarity of the new maps to
    the original ones (``spearman_abs``, ``spearman``, ``ssim``, ``hog``; mean over ``n`` images)."""
    from ..metrics import model_randomisation
    start = time.perf_counter()
    notes: list[str] = []
    net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
    x = ds.x
    wanted = SANITY_METHODS if methods is None else methods
    rows = []
    for m in available_methods(wanted, notes):
        for level, layer in levels(net):
            opts = method_options(m, x, level, seed)
            if opts is None:
                continue
            opts.pop("seed", None)        # model_randomisation seeds both the re-initialisation and the method
            try:
                r = model_randomisation(net, x, m, mode=mode, seed=seed, layer=layer, batch_size=batch_size,
                                        progress=progress, keep_maps=False, **opts)
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            if not r.details["weights_restored"]:   # pragma: no cover - guarded by the copy
                raise RuntimeError("the model's weights changed during the sanity check")
            for row in r.rows():
                rows.append({"method": m, "level": level, **row})
    settings = {"model": model, "images": n, "mode": mode, "seed": seed, "layer": last_conv_layer(net),
                "randomised": "reset_parameters() per layer, top layer first"}
    return finish_table(rows, "sanity", f"Sanity check (Figures 3.3/3.4): {mode} randomisation", settings, start,
                        notes, as_frame, plot=_sanity_plot)


def _sanity_plot(table: Table):
    from ..viz._mpl import new_figure
    fig = new_figure(9.0, 3.6)
    levels = sorted({r["level"] for r in table})
    for k, level in enumerate(levels):
        ax = fig.add_subplot(1, len(levels), k + 1)
        for m in dict.fromkeys(r["method"] for r in table if r["level"] == level):
            rs = [r for r in table if r["level"] == level and r["method"] == m]
            ax.plot([r["fraction_randomised"] for r in rs], [r["spearman_abs"] for r in rs], marker="o", label=m)
        ax.set_title(f"{level} level", fontsize=9)
        ax.set_xlabel("fraction of layers randomised (top first)")
        ax.set_ylabel("Spearman |map| vs original")
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=6)
    return fig


def sanity_summary(table) -> Table:
    """One row per method and level: ``spearman_abs`` after each stage (``s1``, ``s2``, ...)."""
    rows: dict = {}
    for r in table:
        key = (r["method"], r["level"])
        rows.setdefault(key, {"method": r["method"], "level": r["level"]})[f"after {r['n_randomised']}"] = r["spearman_abs"]
    return Table(rows.values(), name="sanity_summary", title="Spearman rank correlation (|map|) with the original "
                 "after randomising the top k layers")
