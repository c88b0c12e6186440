"""The thesis' chapter 3 as measured tables, recomputed from the built-in models every time they run.

- :func:`class_specificity_table` — Figure 3.1: pixel-level vs last-conv-layer maps for both classes of
  two-object images: pointing game and relevance mass on the right object, rank correlation A vs B.
- :func:`sanity_table` — Figures 3.3/3.4: similarity of maps to the original after cascading randomisation,
  pixel level vs layer level, per method.
- :func:`layer_shapley_timing` — Figure 3.2: Shapley values over the last conv layer's cells vs over pixel
  superpixels: time, evaluations, rank correlation of the upsampled maps.
- :func:`faithfulness_table` — deletion / insertion AUC and MoRF-LeRF per method on the shapes and digits models.
- :func:`reference_choice_table` — IG with baselines zeros / mean / blur / noise: how maps and scores change.
- :func:`text_rationale_table` — token attributions of the text model against its known rationales.
- :func:`vit_specificity_table`, :func:`vit_sanity_table` — Figure 3.1's question for the vision transformer.

Each returns a :class:`Table` (a list of dict rows with ``title``, ``settings``, ``seconds``, ``notes``; a pandas
DataFrame with ``as_frame=True``) that can ``save(csv_path, figure_path)``. ``python -m attrkit.experiments
--all --out docs/`` writes the first five into ``docs/results.md``; ``python -m attrkit.experiments
text_rationale vit_specificity --out docs/`` replaces their sections at its end.

:func:`evaluate_methods` scores methods with the metrics of :data:`METRICS` (``attrkit evaluate``);
:func:`register_metric` adds one (:func:`unregister_metric` removes it).

Modules: :mod:`.table` (the result), :mod:`.common` (models, held-out data, layers), :mod:`.presets` (methods
and their settings), one module per experiment, :mod:`.evaluate` (the metric registry), :mod:`.results`
(``results.md``), ``__main__`` (the command).
"""
from .common import ZOO_DATA, held_out, last_conv_layer, load_model_and_data
from .evaluate import METRICS, Metric, Scoring, evaluate_methods, register_metric, unregister_metric
from .faithfulness import FAITHFULNESS_METHODS, faithfulness_table
from .layer_shapley import layer_shapley_timing
from .presets import GRID_CELLS, PRESETS, SAMPLED_BUDGET, THESIS_METHODS, available_methods, method_options
from .reference_choice import reference_choice_table
from .results import EXPERIMENTS, FUNCTIONS, QUICK, results_markdown, run_all
from .sanity import SANITY_METHODS, sanity_summary, sanity_table
from .specificity import class_specificity_table
from .table import Table
from .text import text_rationale_table, token_scores
from .vit import vit_sanity_table, vit_specificity_table

__all__ = ["Table", "EXPERIMENTS", "THESIS_METHODS", "PRESETS", "SAMPLED_BUDGET", "GRID_CELLS", "ZOO_DATA",
           "load_model_and_data", "held_out", "last_conv_layer", "available_methods", "method_options",
           "class_specificity_table", "SANITY_METHODS", "sanity_table", "sanity_summary", "layer_shapley_timing",
           "FAITHFULNESS_METHODS", "faithfulness_table", "reference_choice_table", "text_rationale_table",
           "token_scores", "vit_specificity_table", "vit_sanity_table", "METRICS", "Metric", "Scoring",
           "register_metric", "unregister_metric", "evaluate_methods", "QUICK", "FUNCTIONS", "run_all",
           "results_markdown"]
