"""Deletion / insertion AUC and MoRF-LeRF per method on the shapes and digits models."""
from __future__ import annotations

import time
from typing import Sequence

from .common import levels, load_model_and_data, log, one_bar, random_attr
from .presets import available_methods, method_options
from .table import bar_plot, finish_table

FAITHFULNESS_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap",
                        "guided_backprop", "deconvnet", "lrp", "grad_cam", "occlusion", "kernel_shap")


@one_bar
def faithfulness_table(n: int = 16, models: Sequence[str] = ("shapes_cnn", "digits_cnn"), methods=None, *,
                       steps: int = 16, seed: int = 0, batch_size: int | None = None, progress: bool | None = None,
                       as_frame: bool = False):
    """Deletion and insertion AUC (Petsiuk et al. 2018; probability of the predicted class over ``steps`` steps
    of pixels, all channels together) per model and method, with two maskers: a blurred copy and zeros (black).
    ``abpc_<masker>`` = insertion - deletion AUC, which equals the area between the LeRF and MoRF deletion
    curves of Samek et al. 2017 (inserting the most relevant fraction 1 - f from the masker gives the same
    images as deleting the least relevant fraction f). A random map is the reference every method should beat
    (lower deletion, higher insertion, larger ABPC). Which masker is informative depends on the data: on
    shapes, scattered black pixels destroy any prediction (random deletion is as "good" as any map); on digits,
    whose background is black, a blurred digit stays recognisable and zeros are the natural masker."""
    from ..metrics import deletion, insertion
    start = time.perf_counter()
    notes: list[str] = []
    wanted = FAITHFULNESS_METHODS if methods is None else methods
    rows = []
    for model in models:
        try:
            net, ds = load_model_and_data(model, n=n, seed=seed, progress=progress)
        except (ImportError, ValueError, AttributeError) as err:
            notes.append(f"{model}: skipped - {err}")
            continue
        x = ds.x
        cands = [("random", "pixel", None, None)]
        for m in available_methods(wanted, notes if model == models[0] else None):
            for level, layer in levels(net):
                opts = method_options(m, x, level, seed)
                if opts is not None:
                    cands.append((m, level, layer, opts))
        for m, level, layer, opts in cands:
            t0 = time.perf_counter()
            try:
                if m == "random":
                    a = random_attr(x, seed)
                else:
                    from ..api import explain
                    kw = dict(opts)
                    if layer is not None:
                        kw["layer"] = layer
                    a = explain(net, x, method=m, batch_size=batch_size, progress=progress, **kw)
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as err:
                notes.append(f"{model} {m} ({level}): skipped - {err}")
                log.info(notes[-1])
                continue
            sec = time.perf_counter() - t0
            kw = dict(steps=steps, batch_size=batch_size, seed=seed, progress=progress)
            row = {"model": model, "method": m, "level": level}
            for masker in ("blur", "zeros"):
                d = deletion(net, x, a, baseline=masker, **kw).score
                i = insertion(net, x, a, baseline=masker, **kw).score
                row.update({f"deletion_{masker}": d, f"insertion_{masker}": i, f"abpc_{masker}": i - d})
            row["seconds_explain"] = sec
            rows.append(row)
    settings = {"models": list(models), "images_per_model": n, "steps": steps,
                "maskers": "blur (Gaussian, sigma = size/10) and zeros (black)",
                "output": "softmax probability of the predicted class",
                "units": "pixels (all channels), or the layer map upsampled", "seed": seed}
    return finish_table(rows, "faithfulness", "Faithfulness: deletion / insertion AUC per method", settings, start,
                        notes, as_frame, plot=lambda t: bar_plot(t, ["deletion_blur", "insertion_blur", "abpc_blur",
                                                                       "abpc_zeros"]))
