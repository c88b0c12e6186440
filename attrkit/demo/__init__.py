"""The main job (``attrkit demo`` / ``make demo``): every method on the built-in models, evaluated, in one report.

1. Load the zoo's shipped weights (``attrkit/zoo_weights``, checksummed) of ``shapes_cnn`` (64 px images of five shapes)
   and ``breast_cancer_mlp`` (30 tabular features); the default run adds ``digits_cnn``.
2. Explain held-out images (one object each, plus images holding two objects of different classes, as in the
   thesis' Figure 3.1) with every registered method (``ak.methods()``) at the input pixels and at the last
   convolutional layer, for two classes per image (the predicted and the runner-up class; both objects'
   classes on two-object images); explain held-out table rows with every method that takes tables.
3. Evaluate: deletion / insertion areas, pointing game and relevance mass on the true object masks, class
   specificity on two-object images, cascading-randomisation sanity checks, each method's own error figure.
4. Write ``report.html`` (self-contained) and PNG figures to the output folder; return a summary.

``fast=True`` uses fewer samples and smaller budgets (under 2 minutes on 2 CPU cores once the models are
cached); the default takes a few minutes.

Modules: :mod:`.settings` (fast / full), :mod:`.batches` (the samples), :mod:`.explaining` (every method),
:mod:`.scores` (the evaluation table), :mod:`.figures`, :mod:`.landscape` (loss landscapes), :mod:`.run`.
"""
from .explaining import explain_all, explain_table, layer_cells, method_options
from .run import run_demo
from .settings import FAST, FIGURE_METHODS, FULL, Settings

__all__ = ["run_demo", "Settings", "FAST", "FULL", "FIGURE_METHODS", "method_options", "layer_cells",
           "explain_all", "explain_table"]
