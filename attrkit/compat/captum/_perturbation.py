"""Captum's perturbation classes on attrkit's coalition games: FeatureAblation, FeaturePermutation, Occlusion,
ShapleyValueSampling, ShapleyValues, KernelShap (Lime: ``_lime.py``)."""
from __future__ import annotations

import torch

from ...core.problem import Result
from ._base import (Attribution, as_tuple, baselines_for, feature_players, per_input, rows_per_call,
                    spec, torch_seed)


def _n_features(players) -> int:
    parts = players if isinstance(players, tuple) else (players,)
    return int(max(int(p.max()) for p in parts)) + 1


class FeatureAblation(Attribution):
    """Leave one feature out: ``f(x) - f(x with feature i set to its baseline)``, credited to every element of
    the feature (Zeiler & Fergus 2014). Without ``feature_mask`` each scalar is a feature; a label used in two
    inputs is one feature, ablated in both at once (Captum 0.9's convention)."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, feature_mask=None,
                  perturbations_per_eval=1, show_progress=False, **kwargs):
        _no_kwargs(kwargs, "FeatureAblation")
        xs, _ = as_tuple(inputs)
        return self._run(self.forward_func, inputs, "feature_ablation", target=target,
                         additional_forward_args=additional_forward_args, show_progress=show_progress,
                         batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]),
                         players=feature_players(feature_mask, xs), baseline=baselines_for(baselines, xs),
                         spread="paint")[1]


def _permute(problem, players, features, perms):
    """``f(x) - f(x with feature l of input k taken from sample perms[l, k, i])`` for every feature ``l``
    (Captum's FeaturePermutation with its draws given; ``features`` are the labels in draw order)."""
    x, n = problem.inputs, problem.n
    lab = torch.broadcast_to(torch.as_tensor(players).long().to(x.device), x.shape).reshape(n, -1)
    flat = x.reshape(n, -1)
    sizes = problem.layout.sizes if problem.layout is not None else (flat.shape[1],)
    seg = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(x.device)
    f_x = problem.target(problem.outputs, torch.arange(n)).to(torch.float64)
    out = torch.zeros(flat.shape, dtype=torch.float64, device=x.device)
    L = len(features)
    block = max(1, (1 << 22) // max(1, x.numel()))
    for s in range(0, L, block):
        idx = range(s, min(L, s + block))
        masks, batch = [], []
        for l in idx:
            m = lab == int(features[l])
            xp = flat.clone()
            for k in range(len(sizes)):
                mk = m & (seg == k)
                if bool(mk.any()):
                    xp = torch.where(mk, flat[perms[l, k].to(x.device)], xp)
            masks.append(m)
            batch.append(xp)
        v = problem.evaluate(torch.cat(batch).view((-1,) + tuple(x.shape[1:])),
                             torch.arange(n).repeat(len(masks))).to(torch.float64).view(len(masks), n)
        for m, vl in zip(masks, v):
            out += m * (f_x - vl).view(n, 1)
    return Result(out.view(x.shape).to(x.dtype), {"n_evals": L * n})


PERMUTE = spec("feature_permutation", _permute, family="game", layer="never")


class FeaturePermutation(Attribution):
    """Permutation importance per sample (Breiman 2001; Fisher et al. 2019): ``f(x) - f(x with feature i taken
    from another sample of the batch)``. One permutation of the batch per feature, drawn with
    ``torch.randperm`` in Captum's order (so ``torch.manual_seed`` reproduces Captum's numbers); evaluated in
    batches by attrkit. ``perm_func`` other than the default is not supported."""

    def __init__(self, forward_func, perm_func=None):
        super().__init__(forward_func)
        if perm_func is not None:
            raise ValueError("a custom perm_func is not supported by the compat FeaturePermutation")

    def attribute(self, inputs, target=None, additional_forward_args=None, feature_mask=None,
                  perturbations_per_eval=1, show_progress=False, **kwargs):
        _no_kwargs(kwargs, "FeaturePermutation")
        xs, _ = as_tuple(inputs)
        n = xs[0].shape[0]
        if n < 2:
            raise ValueError("FeaturePermutation permutes features across the batch: give at least 2 samples")
        players = feature_players(feature_mask, xs)
        parts = players if isinstance(players, tuple) else (players,)
        features = torch.unique(torch.cat([p.reshape(-1).cpu() for p in parts]))
        perms = torch.zeros(len(features), len(xs), n, dtype=torch.long)
        for l, f in enumerate(features):          # Captum's order: feature by feature, each input holding it
            for k, p in enumerate(parts):
                if bool((p == f).any()):
                    perm = torch.randperm(n)
                    while bool((perm == torch.arange(n)).all()):
                        perm = torch.randperm(n)
                    perms[l, k] = perm
        return self._run(self.forward_func, inputs, PERMUTE, target=target,
                         additional_forward_args=additional_forward_args, show_progress=show_progress,
                         batch_size=rows_per_call(perturbations_per_eval, n), players=players, features=features,
                         perms=perms)[1]


class Occlusion(Attribution):
    """Sliding-window occlusion (Zeiler & Fergus 2014): each window's drop ``f(x) - f(x with the window set to
    the baseline)`` is credited to the elements under it, overlaps averaged. ``sliding_window_shapes`` and
    ``strides`` (default 1) cover every non-batch dimension, one tuple per input."""

    def attribute(self, inputs, sliding_window_shapes, strides=None, baselines=None, target=None,
                  additional_forward_args=None, perturbations_per_eval=1, show_progress=False):
        xs, _ = as_tuple(inputs)
        k = len(xs)
        wins = [sliding_window_shapes] if k == 1 else per_input(sliding_window_shapes, k, "sliding_window_shapes")
        sts = [1 if strides is None else strides] if k == 1 else per_input(1 if strides is None else strides, k,
                                                                             "strides")
        geos = []
        for x, w, s in zip(xs, wins, sts):
            w = tuple(w) if isinstance(w, (tuple, list)) else (w,)
            if len(w) != x.dim() - 1:
                raise ValueError(f"sliding_window_shapes {w} must give one size per non-batch dim of the input "
                                 f"{tuple(x.shape[1:])}")
            s = (s,) * len(w) if isinstance(s, int) else tuple(s)
            geos.append((tuple(x.shape[1:]), w, s))
        return self._run(self.forward_func, inputs, "occlusion", target=target,
                         additional_forward_args=additional_forward_args, show_progress=show_progress,
                         batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]),
                         window=geos[0][1] if k == 1 else tuple(g[1] for g in geos),
                         stride=geos[0][2] if k == 1 else tuple(g[2] for g in geos),
                         baseline=baselines_for(baselines, xs))[1]


class ShapleyValueSampling(Attribution):
    """Shapley values by permutation sampling (Castro et al. 2009) on attrkit's estimator: antithetic orderings
    stratified by position, efficiency held exactly. Captum's ``n_samples`` counts permutations; one ordering of
    ``L`` features costs about ``L - 1`` new evaluations, so the budget passed on is ``n_samples * (L - 1)``
    evaluations per sample. The estimate differs from Captum's draw by draw and agrees within standard errors
    (both are unbiased); with no interactions between features both are exact. Each element gets its feature's
    value; a label used in two inputs is one feature."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, feature_mask=None,
                  n_samples=25, perturbations_per_eval=1, show_progress=False):
        xs, _ = as_tuple(inputs)
        players = feature_players(feature_mask, xs)
        L = _n_features(players)
        budget = max(2 * (L - 1), int(n_samples) * (L - 1), 1)
        if L == 1:
            return self._run(self.forward_func, inputs, "shapley", target=target,
                             additional_forward_args=additional_forward_args, players=players,
                             baseline=baselines_for(baselines, xs), spread="paint")[1]
        return self._run(self.forward_func, inputs, "shapley_sampling", target=target,
                         additional_forward_args=additional_forward_args, show_progress=show_progress,
                         batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]), players=players,
                         baseline=baselines_for(baselines, xs), n_samples=budget, spread="paint", seed=torch_seed())[1]


class ShapleyValues(Attribution):
    """Exact Shapley values. Captum evaluates all ``L!`` orderings (``L * L!`` model calls); attrkit evaluates
    each of the ``2^L`` coalitions once (Theorem 2.32), the same numbers for far fewer calls (10 features:
    1,024 instead of 36,288,000), and refuses above 20 features with the cost."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, feature_mask=None,
                  perturbations_per_eval=1, show_progress=False):
        xs, _ = as_tuple(inputs)
        return self._run(self.forward_func, inputs, "shapley", target=target,
                         additional_forward_args=additional_forward_args, show_progress=show_progress,
                         batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]),
                         players=feature_players(feature_mask, xs),
                         baseline=baselines_for(baselines, xs), spread="paint")[1]


class KernelShap(Attribution):
    """KernelSHAP (Lundberg & Lee 2017) on attrkit's estimator: paired coalitions from the Shapley kernel,
    efficiency held exactly, every coalition used once when ``n_samples >= 2^L - 2`` (then the values are the
    exact Shapley values). ``n_samples`` counts model evaluations, as in Captum; attrkit refuses fewer than
    ``L`` (Captum then fits an underdetermined regression). ``return_input_shape=False`` gives ``[N, L]``."""

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, feature_mask=None,
                  n_samples=25, perturbations_per_eval=1, return_input_shape=True, show_progress=False):
        xs, _ = as_tuple(inputs)
        a, values = self._run(self.forward_func, inputs, "kernel_shap", target=target,
                              additional_forward_args=additional_forward_args, show_progress=show_progress,
                              batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]),
                              players=feature_players(feature_mask, xs),
                              baseline=baselines_for(baselines, xs), n_samples=int(n_samples), spread="paint",
                              seed=torch_seed())
        if return_input_shape:
            return values
        pv = a.info["player_values"]
        if isinstance(pv, (tuple, list)):
            pv = torch.cat([p.reshape(p.shape[0], -1) for p in pv], 1)
        return pv.to(xs[0].dtype)


def _no_kwargs(kwargs, name):
    if kwargs:
        raise TypeError(f"{name}.attribute got unexpected argument(s) {sorted(kwargs)}")
