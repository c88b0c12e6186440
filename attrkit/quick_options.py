"""``quick_options``: the options a method gets in a batch job (the demo, the experiments) at one level.

One rule for every caller; the numbers (grid cells, budget, steps, seed) are parameters, so the demo and the
experiments keep their own settings. ``MethodSpec.quick_options`` calls it.
"""
from __future__ import annotations

import torch

LEVELS = ("pixel", "layer", "table")


def quick_options(spec, x: torch.Tensor, level: str, *, n_players: int | None = None,
                  presets: dict | None = None, steps: int | None = None, noise_samples: int | None = None,
                  grid_cells: int = 8, exact_cells: int = 3, max_exact_players: int = 0,
                  budget: int | None = None, per_player: int | None = None, min_budget: int = 64,
                  seed: int | None = None, skip_families: tuple = ()) -> dict | None:
    """Options for method ``spec`` at ``level`` ("pixel": the input; "layer": a hidden layer; "table": the
    columns of a table), or None where it does not apply (CAMs need a layer; exact Shapley needs few players).

    presets: per-method options given first (``{name: {option: value}}``). steps: Integrated Gradients' points.
    noise_samples: ``n_samples`` of sampled gradient methods (SmoothGrad & co., Gradient SHAP).
    grid_cells / exact_cells: image players at the pixels, a ``cells x cells`` grid (exact Shapley:
    ``exact_cells``, 2^(cells^2) coalitions). max_exact_players: exact methods run away from the pixels only
    with at most this many players (``n_players``: the layer's cells or the table's columns; unknown: refused).
    budget: ``n_samples`` of the other sampled methods; per_player instead makes it
    ``max(min_budget, per_player * players)`` (sampled Shapley: twice that). seed: given to sampled methods.
    skip_families: families that never apply (e.g. "attention" for models without attention).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if spec.layer == ("never" if level == "layer" else "required") or spec.family in skip_families:
        return None
    opts = dict((presets or {}).get(spec.name, {}))
    if steps is not None and spec.takes("steps"):
        opts["steps"] = steps
    if spec.family == "gradient" and spec.sampled and noise_samples is not None and spec.budget_option:
        opts["n_samples"] = noise_samples
    if spec.takes("players"):
        if spec.exact and level != "pixel" and (n_players is None or n_players > max_exact_players):
            return None                                # 2^players coalitions: too many
        if level == "pixel" and x.dim() == 4:
            from .games.players import grid
            opts["players"] = grid(x, cells=exact_cells if spec.exact else grid_cells)
    if spec.sampled and spec.budget_option and "n_samples" not in opts:
        if per_player is not None:
            players = grid_cells ** 2 if level == "pixel" else (n_players or 64)
            opts["n_samples"] = max(min_budget, per_player * (2 if spec.name == "shapley_sampling" else 1) * players)
        elif budget is not None:
            opts["n_samples"] = budget
    if spec.sampled and seed is not None:
        opts["seed"] = seed
    return opts
