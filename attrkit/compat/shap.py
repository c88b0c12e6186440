"""SHAP's explainers over torch models on attrkit's engines, and ``shap.Explanation`` from attrkit results.

``Explainer(model, data)``, ``KernelExplainer(model, data)``, ``ExactExplainer(model, masker)``,
``PermutationExplainer(model, masker)``, ``GradientExplainer(model, data)`` and ``DeepExplainer(model, data)``
follow SHAP's call conventions:
``.shap_values(X)`` returns an array ``[N, *features]`` (``[N, *features, K]`` for a model with ``K`` outputs
per sample, as SHAP >= 0.45 does), ``explainer(X)`` a ``shap.Explanation``, ``.expected_value`` the mean output
over ``data``. ``model`` is a torch module or a callable on numpy arrays (SHAP's model-agnostic form). The
tabular explainers read ``data`` as SHAP's independent masker: an absent feature takes each background row's
value in turn and the outputs are averaged (``v(S) = mean_b f(x_S, b_~S)``).

What attrkit computes differently: KernelSHAP pairs its coalitions and holds efficiency exactly (no
``l1_reg`` feature selection: every feature gets a value); permutation sampling is antithetic and stratified;
all of them are exact when the budget covers every coalition. GradientExplainer draws SHAP's samples in SHAP's
order (same ``rseed``, same values); Gradient and Deep explainers take several inputs as lists, as SHAP does.
``shap`` itself is imported only to build ``Explanation`` objects.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..api import explain


# ----------------------------------------------------------------------------------------- Explanation
def _shap():
    try:
        import shap
    except ImportError as err:   # pragma: no cover - depends on the environment
        raise ImportError("shap.Explanation objects need the shap package: pip install shap") from err
    return shap


def _channels_last(a: np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` (attrkit, torch) -> ``[N, H, W, C]`` (SHAP's image layout); other ranks unchanged."""
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def explanation(attribution, feature_names=None, output_names=None):
    """A ``shap.Explanation`` of one attrkit ``Attribution`` (``Attribution.to_shap()``).

    ``values``/``data`` are the attributions and inputs (images as ``[N, H, W, C]``, SHAP's layout, so
    ``shap.plots.image`` takes them); ``base_values`` is the output at the reference where the method has one
    (``f(baseline)`` of path methods, ``v(empty)`` of Shapley games), otherwise ``f(x) - sum(values)`` so that
    SHAP's additivity holds; ``error_std`` carries attrkit's standard errors when the method reports them.
    """
    shap = _shap()
    a = attribution
    if a.multi or isinstance(a.inputs, (tuple, list, dict)):
        a.require_single("a shap.Explanation")
    if a.layer is not None:
        raise ValueError("to_shap() needs an attribution of the input, not of a layer")
    values = a.values.detach().cpu().double().numpy()
    n = values.shape[0]
    base = a.info.get("f_baseline", a.info.get("base_value"))
    if isinstance(base, torch.Tensor) and base.numel() == n:
        base = base.detach().cpu().double().numpy().reshape(n)
    else:
        out = a.outputs.detach().cpu().double()
        out = out.reshape(n, -1)
        col = a.target.long().view(-1, 1).cpu() if isinstance(a.target, torch.Tensor) else torch.zeros(n, 1).long()
        f_x = out.gather(1, col).squeeze(1).numpy()
        base = f_x - values.reshape(n, -1).sum(1)
    err = a.info.get("std_err")
    err = _channels_last(err.detach().cpu().double().numpy()) if isinstance(err, torch.Tensor) and \
        tuple(err.shape) == tuple(values.shape) else None
    names = feature_names if feature_names is not None else getattr(a, "feature_names", None)
    if output_names is None:
        output_names = _class_name(a)
    data = a.inputs.detach().cpu().numpy() if isinstance(a.inputs, torch.Tensor) else None
    return shap.Explanation(values=_channels_last(values), base_values=base,
                            data=_channels_last(data) if data is not None else None,
                            feature_names=list(names) if names is not None else None,
                            output_names=output_names, error_std=err)


def _class_name(a):
    """The explained class's name when every sample explains the same class and the names are known."""
    classes, t = getattr(a, "class_names", None), a.target
    if classes is None or not isinstance(t, torch.Tensor) or t.numel() == 0 or bool((t != t[0]).any()):
        return None
    k = int(t[0])
    try:
        return str(classes[k])
    except (KeyError, IndexError, TypeError):
        return None


# ------------------------------------------------------------------------------------------ explainers
class _NumpyModel(nn.Module):
    """A model given as a function on numpy arrays (SHAP's model-agnostic form) as a torch callable."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        out = self.fn(x.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(out), dtype=x.dtype, device=x.device)


def _tensor(X) -> torch.Tensor:
    if hasattr(X, "values") and not isinstance(X, (np.ndarray, torch.Tensor)):      # pandas
        X = X.values
    if isinstance(X, torch.Tensor):
        return X.detach()
    t = torch.as_tensor(np.asarray(X))
    return t.float() if t.is_floating_point() or t.dtype in (torch.int64, torch.int32) else t


def _background(data) -> torch.Tensor:
    if hasattr(data, "data") and not isinstance(data, (np.ndarray, torch.Tensor)):   # a shap masker object
        data = data.data
    return _tensor(data)


class _Explainer:
    """Shared: the model, the background data, the output count and the expected value."""

    def __init__(self, model, data, feature_names=None):
        self.data = _background(data)
        if isinstance(model, nn.Module):
            self.model = model
        elif callable(model):
            try:
                probe = model(self.data[:1])
            except Exception:
                probe = None
            self.model = model if isinstance(probe, torch.Tensor) else _NumpyModel(model)
        else:
            raise TypeError(f"model must be a torch module or a callable, got {type(model).__name__}")
        self.feature_names = feature_names
        with torch.no_grad():
            out = self.model(self.data)
        if out.dim() > 2:
            raise ValueError(f"the model returns {tuple(out.shape)} per batch; SHAP's explainers need [N] or [N, K]")
        self.n_outputs = None if out.dim() == 1 else int(out.shape[1])
        mean = out.double().mean(0).cpu().numpy()
        self.expected_value = float(mean) if self.n_outputs is None else mean

    def _stack(self, per_output: list) -> np.ndarray:
        """One ``[N, *features]`` array per output -> SHAP's layout."""
        if self.n_outputs is None:
            return per_output[0]
        return np.stack(per_output, axis=-1)

    def __call__(self, X, **kwargs):
        return self._explanation(X, self.shap_values(_tensor(X), **kwargs))

    def _explanation(self, X, values):
        shap = _shap()
        x = _tensor(X)
        n = x.shape[0]
        base = np.tile(np.asarray(self.expected_value, dtype=np.float64), (n, 1))
        base = base[:, 0] if self.n_outputs is None else base
        names = self.feature_names
        if names is None and hasattr(X, "columns"):
            names = list(X.columns)
        return shap.Explanation(values=values, base_values=base, data=x.cpu().numpy(),
                                feature_names=list(names) if names is not None else None)


class _GameExplainer(_Explainer):
    """Tabular Shapley estimators with the background data as SHAP's independent masker."""

    method = "shapley"

    def _values(self, x, **options) -> np.ndarray:
        if x.dim() != 2:
            raise ValueError(f"{type(self).__name__} explains tabular data [N, features], got {tuple(x.shape)}")
        from ..games.maskers import Background
        a = explain(self.model, x.to(self.data.dtype), self.method, target=0 if self.n_outputs else None,
                    masker=Background(self.data), all_classes=self.n_outputs is not None, spread="paint",
                    **options)
        if self.n_outputs is None:
            return a.values.detach().cpu().double().numpy()
        phi = a.info["player_values_all"].detach().cpu().double().numpy()                 # [N, K, F]
        return phi.transpose(0, 2, 1)


class KernelExplainer(_GameExplainer):
    """KernelSHAP (Lundberg & Lee 2017) with ``data`` as background: ``shap_values(X, nsamples="auto")``
    (``"auto"``: ``2 F + 2048`` model evaluations per sample, SHAP's default); exact when ``nsamples`` covers
    all ``2^F - 2`` coalitions."""

    method = "kernel_shap"

    def __init__(self, model, data, link="identity", feature_names=None, **kwargs):
        if link != "identity":
            raise ValueError("only link='identity' is supported by the compat KernelExplainer")
        super().__init__(model, data, feature_names)

    def shap_values(self, X, nsamples="auto", l1_reg="auto", silent=False, seed=0, **kwargs):
        x = _tensor(X)
        f = int(np.prod(x.shape[1:]))
        n = 2 * f + 2048 if nsamples == "auto" else int(nsamples)
        return self._values(x, n_samples=max(n, f), seed=seed, progress=not silent and None)


class ExactExplainer(_GameExplainer):
    """Exact Shapley values over all ``2^F`` coalitions (Theorem 2.32), ``data`` as the background masker."""

    def __init__(self, model, masker, link=None, linearize_link=True, feature_names=None, **kwargs):
        super().__init__(model, masker, feature_names)

    def shap_values(self, X, **kwargs):
        return self._values(_tensor(X))

    def __call__(self, *args, max_evals=100000, main_effects=False, error_bounds=False, batch_size="auto",
                 interactions=1, silent=False):
        return self._explanation(args[0], self.shap_values(args[0]))


class PermutationExplainer(_GameExplainer):
    """Shapley values by antithetic permutation sampling, ``data`` as the background masker, seeded by ``seed``.
    ``explainer(X, max_evals=500)``: model evaluations per sample (SHAP's meaning); ``shap_values(X,
    npermutations=10)``: forward-and-back passes through all features, ``2 (F - 1)`` evaluations each."""

    method = "shapley_sampling"

    def __init__(self, model, masker, link=None, feature_names=None, linearize_link=True, seed=None, **kwargs):
        super().__init__(model, masker, feature_names)
        self.seed = 0 if seed is None else int(seed)

    def _budget(self, x, evals):
        f = int(np.prod(x.shape[1:]))
        return max(int(evals), 2 * (f - 1), 1)

    def shap_values(self, X, npermutations=10, main_effects=False, error_bounds=False, batch_evals=True,
                    silent=False):
        x = _tensor(X)
        f = int(np.prod(x.shape[1:]))
        return self._values(x, n_samples=self._budget(x, 2 * npermutations * (f - 1)), seed=self.seed)

    def __call__(self, *args, max_evals=500, main_effects=False, error_bounds=False, batch_size="auto",
                 outputs=None, silent=False):
        x = _tensor(args[0])
        return self._explanation(args[0], self._values(x, n_samples=self._budget(x, max_evals), seed=self.seed))


def Explainer(model, masker, algorithm: str = "auto", feature_names=None, seed=None, **kwargs):
    """SHAP's ``shap.Explainer(model, data)`` entry point for tabular data: ``algorithm="auto"`` picks the exact
    explainer up to 10 features and permutation sampling above (SHAP's rule); ``"exact"``, ``"permutation"``,
    ``"kernel"``, ``"deep"`` and ``"gradient"`` choose one. Call the result on ``X`` for a ``shap.Explanation``."""
    data = _background(masker)
    if algorithm == "auto":
        algorithm = "exact" if int(np.prod(data.shape[1:])) <= 10 else "permutation"
    if algorithm == "exact":
        return ExactExplainer(model, data, feature_names=feature_names)
    if algorithm == "permutation":
        return PermutationExplainer(model, data, feature_names=feature_names, seed=seed)
    if algorithm == "kernel":
        return KernelExplainer(model, data, feature_names=feature_names)
    if algorithm in ("deep", "gradient"):
        return (DeepExplainer if algorithm == "deep" else GradientExplainer)(model, data)
    raise ValueError(f"unknown algorithm {algorithm!r}; use auto, exact, permutation, kernel, deep or gradient")


class _TorchExplainer(_Explainer):
    """Explainers that take gradients through a torch module; ``data`` may be a list (several inputs, as SHAP's
    ``model(*inputs)``), then ``shap_values`` returns one array per input."""

    def __init__(self, model, data):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} needs a torch module (gradients are taken through it)")
        self.multi = isinstance(data, (list, tuple))
        self.parts = tuple(_tensor(d) for d in data) if self.multi else (_background(data),)
        self.model, self.feature_names = model, None
        with torch.no_grad():
            out = model(*self.parts)
        if out.dim() > 2:
            raise ValueError(f"the model returns {tuple(out.shape)} per batch; SHAP's explainers need [N] or [N, K]")
        self.n_outputs = None if out.dim() == 1 else int(out.shape[1])
        mean = out.double().mean(0).cpu().numpy()
        self.expected_value = float(mean) if self.n_outputs is None else mean
        self.data = list(self.parts) if self.multi else self.parts[0]

    def _inputs(self, X) -> tuple:
        if self.multi != isinstance(X, (list, tuple)):
            raise ValueError("give X as a list of inputs exactly when the background data is a list "
                             f"({len(self.parts)} input{'s' if self.multi else ''} here)")
        xs = X if self.multi else (X,)
        return tuple(_tensor(x).to(p.dtype) for x, p in zip(xs, self.parts))

    def _targets(self):
        return [None] if self.n_outputs is None else list(range(self.n_outputs))

    def _arrange(self, per_output: list):
        """``per_output[k]``: a tuple with one ``[N, ...]`` tensor per input -> SHAP's layout (outputs last; a
        list over inputs for several inputs)."""
        arrays = [self._stack([t[i].detach().cpu().double().numpy() for t in per_output])
                  for i in range(len(self.parts))]
        return arrays if self.multi else arrays[0]

    def __call__(self, X, **kwargs):
        if self.multi:
            raise ValueError("an Explanation holds one input: call shap_values(X) for several inputs")
        return self._explanation(X, self.shap_values(X, **kwargs))

    def _call(self, xs, method, **options):
        """``ak.explain`` on the inputs (a tensor, or a tuple for several); values as a tuple per input."""
        v = explain(self.model, xs if len(xs) > 1 else xs[0], method, **options).values
        return tuple(v) if isinstance(v, (tuple, list)) else (v,)


class GradientExplainer(_TorchExplainer):
    """Expected gradients (Erion et al. 2021; SHAP's GradientExplainer): per sample, ``nsamples`` draws of a
    background row ``b`` and a position ``t ~ U(0, 1)``, the mean of ``grad f(t x~ + (1 - t) b) * (x~ - b)`` with
    ``x~ = x + N(0, local_smoothing^2)``. The draws follow SHAP's generators and order (numpy seeded by ``rseed``
    for every output, torch for the smoothing noise), so with the same ``rseed`` the values equal SHAP's; all
    draws of all samples then run as one batched attrkit call per output."""

    def __init__(self, model, data, session=None, batch_size=50, local_smoothing=0):
        super().__init__(model, data)
        self.batch_size, self.local_smoothing = batch_size, float(local_smoothing)

    def shap_values(self, X, nsamples=200, ranked_outputs=None, output_rank_order="max", rseed=None,
                    return_variances=False):
        from .captum._gradients import PAIRS
        _no_ranking(ranked_outputs, return_variances)
        xs = self._inputs(X)
        n, s, m = xs[0].shape[0], int(nsamples), self.parts[0].shape[0]
        if rseed is None:
            rseed = np.random.randint(0, 1e6)
        out = []
        for k in self._targets():
            rng = np.random.RandomState(rseed)             # SHAP reseeds for every output: the same draws
            rows, ts = np.zeros(n * s, dtype=np.int64), np.zeros(n * s)
            noise = [torch.zeros((n * s,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device) for x in xs]
            for j in range(n * s):
                rows[j], ts[j] = rng.choice(m), rng.uniform()
                if self.local_smoothing > 0:
                    for a, x in enumerate(xs):
                        noise[a][j] = torch.empty(x.shape[1:], device=x.device).normal_() * self.local_smoothing
            refs = [p[torch.as_tensor(rows)].to(x.device) for p, x in zip(self.parts, xs)]
            pack = lambda parts: parts[0] if len(parts) == 1 else torch.cat([t.reshape(t.shape[0], -1)
                                                                              for t in parts], 1)
            out.append(self._call(xs, PAIRS, target=k, pair_refs=pack(refs), pair_noise=pack(noise),
                                  alphas=torch.as_tensor(ts, dtype=xs[0].dtype), samples_per_input=s, seed=0))
        return self._arrange(out)


class DeepExplainer(_TorchExplainer):
    """DeepSHAP (Lundberg & Lee 2017): DeepLIFT's rescale rule against every background row, averaged; all
    ``N x M`` (sample, background row) pairs run as one batched attrkit call per output."""

    def __init__(self, model, data, session=None, learning_phase_flags=None):
        super().__init__(model, data)

    def shap_values(self, X, ranked_outputs=None, output_rank_order="max", check_additivity=True):
        _no_ranking(ranked_outputs, False)
        xs = self._inputs(X)
        n, m = xs[0].shape[0], self.parts[0].shape[0]
        pairs = tuple(x.repeat_interleave(m, 0) for x in xs)
        refs = tuple(p.to(x.device).repeat((n,) + (1,) * (p.dim() - 1)) for p, x in zip(self.parts, xs))
        out = []
        for k in self._targets():
            v = self._call(pairs, "deeplift", target=k, baseline=refs if len(refs) > 1 else refs[0], seed=0)
            out.append(tuple(t.reshape((n, m) + tuple(t.shape[1:])).mean(1) for t in v))
        if check_additivity:
            with torch.no_grad():
                f_x = self.model(*xs).double().cpu().reshape(n, -1)
            total = sum(torch.stack([t[i].double().cpu().reshape(n, -1).sum(1) for t in out], 1)
                        for i in range(len(xs)))
            gap = float((total - (f_x - torch.as_tensor(self.expected_value).reshape(1, -1))).abs().max())
            if gap > 1e-2 * max(1.0, float(f_x.abs().max())):
                raise ValueError(f"the DeepSHAP values miss additivity by {gap:.3g}: the model has operations the "
                                 "rescale rule does not cover; pass check_additivity=False to get them anyway")
        return self._arrange(out)


def _no_ranking(ranked_outputs, return_variances):
    if ranked_outputs is not None or return_variances:
        raise ValueError("ranked_outputs / return_variances are not supported by the compat explainers: explain "
                         "every output (the default) and index the last axis")
