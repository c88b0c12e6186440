"""The demo's two sizes (fast and full) and the models and methods it shows."""
from __future__ import annotations

from dataclasses import dataclass


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
