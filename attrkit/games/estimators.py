"""Importing this module registers the coalition-game estimators (each lives in its own small module)."""
from . import ablation, kernel_shap, lime, sampling, shapley  # noqa: F401  (registration side effects)

__all__ = ["ablation", "kernel_shap", "lime", "sampling", "shapley"]
