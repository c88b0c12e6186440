"""Coalition games (thesis section 2.4): players, maskers, the ``Game`` evaluator, the layer split, and the
estimators registered with ``ak.explain`` — ``occlusion``, ``feature_ablation``, ``lime``, ``kernel_shap``,
``shapley`` (exact) and ``shapley_sampling``."""
from .game import Game
from .maskers import Background, Masker
from .partitions import features, grid, layer_players, superpixels
from .players import Players, as_players
from .shapley import exact_from_values

__all__ = ["Game", "Masker", "Background", "Players", "as_players", "features", "grid", "superpixels",
           "layer_players", "exact_from_values"]
