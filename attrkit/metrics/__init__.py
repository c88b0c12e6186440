"""Evaluation of attributions: every map can be checked, and every check is a number with its per-sample values.

- axioms (thesis 2.2, 2.4): :func:`completeness`, :func:`sensitivity`, :func:`dummy`, :func:`symmetry`,
  :func:`linearity`, :func:`implementation_invariance`;
- faithfulness: :func:`deletion`, :func:`insertion`, :func:`morf_lerf`, :func:`faithfulness_correlation`,
  :func:`infidelity`, :func:`max_sensitivity`;
- sanity checks (Adebayo et al. 2018): :func:`cascading_randomisation`, :func:`independent_randomisation`;
- localisation: :func:`pointing_game`, :func:`relevance_mass`, :func:`relevance_rank`, :func:`mask_auc`;
- class specificity: :func:`class_specificity`.

Each function takes ``(model, x, attribution | method, target, ...)`` — an :class:`~attrkit.Attribution`, a
values tensor, or a method name run with the remaining keyword options — and returns a :class:`MetricResult`
(``score``, ``per_sample``, ``passed`` for axioms, ``details``).

>>> import torch, attrkit as ak
>>> from attrkit import metrics
>>> _ = torch.manual_seed(0)
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
>>> metrics.completeness(model, torch.randn(5, 4), "integrated_gradients", steps=64).all_passed
True
>>> metrics.completeness(model, torch.randn(5, 4), "saliency").all_passed
False
"""
from ._common import MetricResult
from .axioms import completeness, dummy, find_dummies, find_symmetric_pairs, sensitivity, symmetry
from .invariance import SumModel, implementation_invariance, linearity, rescaled_copy
from .faithfulness import (deletion, faithfulness_correlation, infidelity, insertion, max_sensitivity, morf_lerf,
                           perturbation_curve)
from .localisation import localisation, mask_auc, pointing_game, relevance_mass, relevance_rank
from .sanity import (RandomisationResult, cascading_randomisation, independent_randomisation, model_randomisation,
                     parametrised_layers, randomise_layer)
from .specificity import class_specificity, pair_masks
from ..core.call import several_inputs as _several_inputs

# several inputs (tuple/dict x), constant forward arguments and structured outputs for every (model, x, ...) metric
(completeness, sensitivity, dummy, symmetry, find_dummies, find_symmetric_pairs, perturbation_curve, deletion,
 insertion, morf_lerf, faithfulness_correlation, infidelity, max_sensitivity, model_randomisation,
 cascading_randomisation, independent_randomisation) = map(_several_inputs, (
    completeness, sensitivity, dummy, symmetry, find_dummies, find_symmetric_pairs, perturbation_curve, deletion,
    insertion, morf_lerf, faithfulness_correlation, infidelity, max_sensitivity, model_randomisation,
    cascading_randomisation, independent_randomisation))

__all__ = [
    "MetricResult", "RandomisationResult",
    "completeness", "sensitivity", "dummy", "symmetry", "linearity", "implementation_invariance",
    "SumModel", "rescaled_copy", "find_dummies", "find_symmetric_pairs",
    "deletion", "insertion", "morf_lerf", "perturbation_curve", "faithfulness_correlation", "infidelity",
    "max_sensitivity",
    "model_randomisation", "cascading_randomisation", "independent_randomisation", "parametrised_layers",
    "randomise_layer",
    "pointing_game", "relevance_mass", "relevance_rank", "mask_auc", "localisation",
    "class_specificity", "pair_masks",
]
