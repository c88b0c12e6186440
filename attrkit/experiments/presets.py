"""Which methods the experiments run and with which settings (a few minutes on two CPU cores)."""
from __future__ import annotations

import torch

from .common import log

# Methods in the order of the thesis' figures; everything else ak.methods() lists is appended.
THESIS_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                  "deconvnet", "grad_cam")
# Per-method settings that keep every experiment within minutes on two CPU cores.
PRESETS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"n_samples": 8},
           "smoothgrad_sq": {"n_samples": 8}, "vargrad": {"n_samples": 8}, "gradient_shap": {"n_samples": 8}}
SAMPLED_BUDGET = 256     # n_samples for sampled coalition methods (4 per player of an 8 x 8 grid)
GRID_CELLS = 8           # pixel-level players of coalition methods: an 8 x 8 grid


def available_methods(requested=None, notes: list | None = None) -> list[str]:
    """``requested`` (default: the thesis' methods, then every other registered one) restricted to what
    ``ak.methods()`` lists; missing ones are logged and noted."""
    from ..registry import methods
    reg = list(methods())
    names = list(requested) if requested is not None else list(THESIS_METHODS) + [m for m in reg if m not in THESIS_METHODS]
    out = []
    for m in names:
        if m in reg:
            out.append(m)
        else:
            msg = f"{m}: not registered (ak.methods() does not list it) - skipped"
            log.info(msg)
            if notes is not None:
                notes.append(msg)
    return out


def method_options(name: str, x: torch.Tensor, level: str, seed: int = 0) -> dict | None:
    """Settings for ``name`` at ``level`` ("pixel" | "layer") in the experiments, or None when it cannot run
    there. Coalition methods get an 8x8 grid of players at pixel level (the layer's cells at a layer) and a
    budget of :data:`SAMPLED_BUDGET` samples."""
    from ..registry import get
    return get(name).quick_options(x, level, presets=PRESETS, grid_cells=GRID_CELLS, budget=SAMPLED_BUDGET,
                                   seed=seed)

