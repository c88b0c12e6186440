"""Axiom checks (thesis section 2.2 and Shapley's axioms of section 2.4; Sundararajan et al. 2017).

Each check returns a :class:`MetricResult` with ``passed`` per sample and the violation size per sample
(``per_sample``); ``score`` is the largest violation in the batch.

- :func:`completeness` (Def. 2.8 / efficiency 2.27): ``sum_i F_i(x, x') = f(x) - f(x')``.
- :func:`sensitivity` (Def. 2.7): ``x, x'`` differ in one feature ``j`` and ``f(x) != f(x')`` => ``F_j != 0``.
- :func:`dummy` (Def. 2.5 / carrier 2.28): ``f`` does not depend on ``i`` => ``F_i = 0``.
- :func:`symmetry` (Def. 2.19-2.20 / 2.29): ``i, j`` symmetric in ``f`` => swapping ``x_i, x_j`` (and the
  reference's) swaps ``F_i, F_j``; and ``x_i = x_j``, ``x'_i = x'_j`` => ``F_i = F_j``.

Linearity and implementation invariance (two models, one attribution each) are in :mod:`.invariance`.
"""
from __future__ import annotations

import inspect

import torch

from ..core.modules import LayerTap, call_model, eval_mode, resolve_layer
from ..core.references import make_reference
from ._common import (MetricResult, Scorer, check_inputs, explain_values, fixed_target,
                      resolve_attribution, to_np)

__all__ = ["completeness", "sensitivity", "dummy", "symmetry", "find_dummies", "find_symmetric_pairs"]


def _tolerance(violation: torch.Tensor, scale: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    return violation <= atol + rtol * scale


def _check_tol(atol, rtol):
    for name, v in (("atol", atol), ("rtol", rtol)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")


# -------------------------------------------------------------------------------------- completeness
def completeness(model, x, attribution="integrated_gradients", target=None, *, baseline=None,
                 atol: float = 1e-4, rtol: float = 1e-2, batch_size: int | None = None,
                 **options) -> MetricResult:
    """Completeness gap ``g = sum_i F_i(x, x') - (f(x) - f(x'))`` per sample (thesis Def. 2.8).

    The reference ``x'`` is ``baseline`` (a name, number or tensor; see ``make_reference``), else the
    attribution's own ``baseline`` (IG's reference, a game's all-absent input), else zeros — so methods
    without a reference (plain gradients) are judged against the zero input, as in Def. 2.11.
    A baseline shaped like the attributed layer's activation is applied at that layer.
    Passes when ``|g| <= atol + rtol * |f(x) - f(x')|``. ``per_sample`` = ``|g|``;
    ``details["gap"]`` (signed) and ``details["relative_gap"]``.

    >>> import torch, attrkit as ak
    >>> from attrkit.metrics import completeness
    >>> m = torch.nn.Linear(3, 1)
    >>> completeness(m, torch.ones(4, 3), "integrated_gradients").all_passed
    True
    """
    _check_tol(atol, rtol)
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    scorer = Scorer(model, x, target, "target", batch_size, attr)
    f_x = scorer.base()
    ref = baseline if baseline is not None else attr.baseline
    at_layer_ref = False
    if isinstance(ref, torch.Tensor) and attr.layer is not None and tuple(ref.shape[1:]) == tuple(attr.values.shape[1:]) \
            and tuple(ref.shape[1:]) != tuple(x.shape[1:]):
        at_layer_ref = True
    if at_layer_ref:
        f_r = _score_with_layer(model, x, attr.layer, ref.to(x.device, x.dtype), scorer)
    else:
        if isinstance(ref, torch.Tensor) and ref.shape[0] not in (1, x.shape[0]) and tuple(ref.shape) != tuple(x.shape[1:]):
            raise ValueError(f"the attribution's baseline has {ref.shape[0]} rows (a background set); give "
                             "baseline= one reference per sample to check completeness")
        ref_t = make_reference(ref if ref is not None else "zeros", x, seed=options.get("seed"))
        f_r = scorer(ref_t, torch.arange(x.shape[0]))
    total = _player_total(attr)
    delta = (f_x - f_r).cpu()
    gap = total - delta
    viol = gap.abs()
    passed = _tolerance(viol, delta.abs(), atol, rtol)
    rel = viol / delta.abs().clamp_min(1e-12)
    return MetricResult("completeness", float(viol.max()), to_np(viol), to_np(passed),
                        {"gap": to_np(gap), "relative_gap": to_np(rel), "f_x": to_np(f_x), "f_reference": to_np(f_r),
                         "attribution_sum": to_np(total), "method": attr.method, "atol": atol, "rtol": rtol})


def _player_total(attr) -> torch.Tensor:
    """Sum of the attribution per sample; for coalition methods the sum of ``info["player_values"]`` (their
    values spread onto the input need not add up to it)."""
    v = attr.values.detach().to(torch.float64).cpu()
    n = v.shape[0]
    pv = attr.info.get("player_values")
    if pv is not None:
        pv = torch.as_tensor(pv).to(torch.float64).cpu()
        if pv.dim() >= 1 and pv.shape[0] == n:
            return pv.reshape(n, -1).sum(1)
    return v.reshape(n, -1).sum(1)


def _score_with_layer(model, x, layer_name, act, scorer: Scorer) -> torch.Tensor:
    """Target scores with the layer's activation replaced by ``act`` (one row per sample)."""
    _, mod = resolve_layer(model, layer_name)
    out = []
    with torch.inference_mode(), eval_mode(model, warn=False), LayerTap(mod, layer_name) as tap:
        for s in range(0, x.shape[0], scorer.step):
            tap.reset()
            tap.replace_with = act[s:s + scorer.step]
            o = call_model(model, x[s:s + scorer.step])
            out.append(scorer._score(o, torch.arange(s, s + o.shape[0])))
    return torch.cat(out).cpu()


# --------------------------------------------------------------------------------------- helpers
def _reference_option(method, options: dict) -> str | None:
    """The option through which ``method`` takes its reference (``baseline`` or ``masker``), if any."""
    if isinstance(method, str):
        from ..registry import get
        return get(method).reference_option or None
    try:                                   # a plain callable: read its signature
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return None
    for name in ("baseline", "masker"):
        if name in params:
            return name
    return None


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _features(features, d: int, name: str = "features") -> list[int]:
    if features is None:
        return list(range(d))
    feats = [int(f) for f in (features.tolist() if isinstance(features, torch.Tensor) else features)]
    bad = [f for f in feats if not 0 <= f < d]
    if bad:
        raise ValueError(f"{name} {bad} out of range: the inputs have {d} elements per sample (flat index)")
    return feats


def repeat_options(options: dict, n: int, k: int, interleave: bool = False) -> dict:
    """Options holding one tensor row per sample (e.g. per-sample ``players``) repeated for a batch that holds
    ``k`` copies of the ``n`` samples (``t.repeat`` order, or ``repeat_interleave`` order)."""
    out = {}
    for key, v in options.items():
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n and n > 1:
            v = v.repeat_interleave(k, dim=0) if interleave else v.repeat(k, *([1] * (v.dim() - 1)))
        out[key] = v
    return out


def _repeat_target(fixed, k: int):
    if isinstance(fixed, torch.Tensor):
        return fixed.repeat(k)
    return fixed


# ------------------------------------------------------------------------------------ sensitivity
def sensitivity(model, x, method="integrated_gradients", target=None, *, baseline="zeros", features=None,
                tol: float = 1e-6, batch_size: int | None = None, max_features: int = 256,
                **options) -> MetricResult:
    """Sensitivity (thesis Def. 2.7): for each sample and feature ``j``, the reference ``x'`` equals ``x``
    except ``x'_j = r_j`` (``r`` = ``make_reference(baseline, x)``); where ``|f(x) - f(x')| > tol`` the
    attribution ``F_j(x, x')`` must be non-zero (``|F_j| > tol``).

    ``method``: a registered name (explained with the reference ``x'`` when it takes ``baseline``/``masker``)
    or a callable ``fn(model, x, target, baseline=...)``. ``features``: flat element indices to test
    (default all, up to ``max_features``). ``per_sample``: the largest ``|f(x) - f(x')|`` whose feature
    got zero attribution (0 when none); ``details["violations"]``: ``[N, J]`` booleans.
    """
    x = check_inputs(model, x)
    n = x.shape[0]
    d = _flat(x).shape[1]
    feats = _features(features, d)
    if len(feats) > max_features:
        raise ValueError(f"sensitivity would explain {len(feats)} references per sample; pass features= "
                         f"(flat indices) or raise max_features")
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    ref = make_reference(baseline, x, seed=options.get("seed"))
    j = len(feats)
    xs = x.repeat(j, *([1] * (x.dim() - 1)))                       # row = k * n + i
    refs = _flat(xs).clone()
    idx = torch.tensor(feats, device=x.device).repeat_interleave(n)
    rows = torch.arange(j * n, device=x.device)
    refs[rows, idx] = _flat(ref).repeat(j, 1)[rows, idx]
    refs = refs.view_as(xs)
    scorer = Scorer(model, xs, _repeat_target(fixed, j), "target", batch_size)
    df = (scorer.base() - scorer(refs, torch.arange(j * n))).abs().cpu()
    opt = _reference_option(method, options)
    kw = repeat_options(options, n, j)
    if opt is not None:
        kw[opt] = refs
    if isinstance(method, str):
        kw.setdefault("batch_size", batch_size)
    vals = explain_values(model, xs, method, _repeat_target(fixed, j), kw)
    fj = _flat(vals.detach().cpu().to(torch.float64))[torch.arange(j * n), idx.cpu()]
    changed = df > tol
    viol = (changed & (fj.abs() <= tol)).view(j, n).T              # [n, j]
    size = torch.where(viol, df.view(j, n).T, torch.zeros(n, j, dtype=df.dtype)).amax(1)
    passed = ~viol.any(1)
    return MetricResult("sensitivity", float(size.max()), to_np(size), to_np(passed),
                        {"violations": to_np(viol), "features": feats, "output_change": to_np(df.view(j, n).T),
                         "attribution": to_np(fj.view(j, n).T), "reference_option": opt, "tol": tol})


# ------------------------------------------------------------------------------------------ dummy
@torch.inference_mode()
def find_dummies(model, x, target=None, *, n_probes: int = 8, tol: float = 1e-7, seed: int = 0,
                 features=None, batch_size: int | None = None) -> list[int]:
    """Flat feature indices the target output does not depend on, probed on ``x``: each feature is replaced
    by the other samples' values and by Gaussian draws (``n_probes`` per sample); a feature is a dummy when
    no probe changes the output by more than ``tol`` (relative to the output's scale)."""
    x = check_inputs(model, x)
    n = x.shape[0]
    flat = _flat(x)
    if features is None and flat.shape[1] > 256:
        raise ValueError(f"probing all {flat.shape[1]} input elements for dummies is too costly; pass features= "
                         "(flat indices of the elements to probe, or the known dummy features)")
    feats = _features(features, flat.shape[1])
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    g = torch.Generator().manual_seed(int(seed))
    scorer = Scorer(model, x.repeat(n_probes, *([1] * (x.dim() - 1))), _repeat_target(fixed, n_probes),
                    "target", batch_size)
    base = scorer.base().cpu()
    scale = max(1.0, float(base.abs().max()))
    out = []
    for f in feats:
        col = flat[:, f]
        vals = torch.cat([col[torch.randperm(n, generator=g)] for _ in range(n_probes // 2)] +
                         [torch.randn(n, generator=g).to(col) * (col.std() if n > 1 else 1.0) * 2 + col.mean()
                          for _ in range(n_probes - n_probes // 2)])
        probe = flat.repeat(n_probes, 1).clone()
        probe[:, f] = vals.to(probe)
        change = (scorer(probe.view((-1,) + tuple(x.shape[1:])), torch.arange(probe.shape[0])).cpu() - base).abs()
        if float(change.max()) <= tol * scale:
            out.append(f)
    return out


def dummy(model, x, attribution="integrated_gradients", target=None, *, features=None, atol: float = 1e-6,
          rtol: float = 1e-4, n_probes: int = 8, seed: int = 0, batch_size: int | None = None,
          **options) -> MetricResult:
    """Dummy (thesis Def. 2.5 / carrier axiom 2.28): features the output does not depend on get zero
    attribution. ``features``: the dummy features (flat indices); None finds them with :func:`find_dummies`.
    Passes when ``max_dummy |F_i| <= atol + rtol * max_k |F_k|``; ``per_sample`` = ``max_dummy |F_i|``.
    """
    _check_tol(atol, rtol)
    x = check_inputs(model, x)
    attr = resolve_attribution(model, x, attribution, target, options)
    if tuple(attr.values.shape) != tuple(x.shape):
        raise ValueError("dummy compares attributions of input features; give an input-level attribution")
    if features is None:
        feats = find_dummies(model, x, attr.target if isinstance(attr.target, torch.Tensor) else target,
                             n_probes=n_probes, seed=seed, batch_size=batch_size)
    else:
        feats = _features(features, _flat(x).shape[1])
    v = _flat(attr.values.detach().cpu().to(torch.float64))
    scale = v.abs().amax(1)
    if feats:
        size = v[:, feats].abs().amax(1)
    else:
        size = torch.zeros(v.shape[0], dtype=torch.float64)
    passed = _tolerance(size, scale, atol, rtol)
    return MetricResult("dummy", float(size.max()), to_np(size), to_np(passed),
                        {"dummy_features": feats, "method": attr.method, "atol": atol, "rtol": rtol})


# --------------------------------------------------------------------------------------- symmetry
@torch.inference_mode()
def find_symmetric_pairs(model, x, target=None, *, tol: float = 1e-6, features=None,
                         batch_size: int | None = None, n_random: int = 32, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of flat features with ``f(x) = f(x with x_i, x_j swapped)`` on ``x`` and on ``n_random``
    Gaussian inputs of the same scale (thesis Def. 2.19). Quadratic in the number of features."""
    x = check_inputs(model, x)
    g = torch.Generator().manual_seed(int(seed))
    flat = _flat(x)
    if features is None and flat.shape[1] > 64:
        raise ValueError(f"probing all pairs of {flat.shape[1]} input elements for symmetry is too costly; pass "
                         "pairs= to symmetry() or features= here")
    rnd = flat.mean(0) + flat.std(0).clamp_min(1e-3) * torch.randn(n_random, flat.shape[1], generator=g).to(flat)
    probe = torch.cat([flat, rnd])
    xp = probe.view((-1,) + tuple(x.shape[1:]))
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    fixed = fixed if not isinstance(fixed, torch.Tensor) else torch.cat([fixed, fixed[:1].repeat(n_random)])
    scorer = Scorer(model, xp, fixed, "target", batch_size)
    base = scorer.base().cpu()
    scale = max(1.0, float(base.abs().max()))
    feats = _features(features, flat.shape[1])
    pairs = []
    for a_i, i in enumerate(feats):
        for j in feats[a_i + 1:]:
            sw = probe.clone()
            sw[:, [i, j]] = probe[:, [j, i]]
            if (probe[:, i] == probe[:, j]).all():
                continue
            change = (scorer(sw.view_as(xp), torch.arange(sw.shape[0])).cpu() - base).abs().max()
            if float(change) <= tol * scale:
                pairs.append((i, j))
    return pairs


def symmetry(model, x, method="integrated_gradients", target=None, *, pairs=None, baseline="zeros",
             atol: float = 1e-4, rtol: float = 1e-3, batch_size: int | None = None, **options) -> MetricResult:
    """Symmetry (thesis Def. 2.20 / axiom 2.29) for pairs of features symmetric in ``f``.

    For each pair ``(i, j)``: (a) explaining the input with ``x_i, x_j`` swapped (reference swapped too)
    must swap ``F_i`` and ``F_j``; (b) on the input with ``x_j := x_i`` (reference likewise) ``F_i = F_j``.
    ``pairs``: list of ``(i, j)`` flat indices; None finds them with :func:`find_symmetric_pairs`.
    ``per_sample``: the largest violation over pairs and both checks; passes when it is
    ``<= atol + rtol * max |F|``.
    """
    _check_tol(atol, rtol)
    x = check_inputs(model, x)
    n = x.shape[0]
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    if pairs is None:
        pairs = find_symmetric_pairs(model, x, fixed, batch_size=batch_size)
    pairs = [tuple(int(v) for v in p) for p in pairs]
    d = _flat(x).shape[1]
    for p in pairs:
        if len(p) != 2 or not all(0 <= v < d for v in p) or p[0] == p[1]:
            raise ValueError(f"pairs must hold two distinct flat feature indices in [0, {d}), got {p}")
    opt = _reference_option(method, options)
    ref = make_reference(baseline, x, seed=options.get("seed"))
    size = torch.zeros(n, dtype=torch.float64)
    scale = torch.zeros(n, dtype=torch.float64)
    per_pair = {}
    for i, j in pairs:
        fx, fr = _flat(x), _flat(ref)
        sw, swr = fx.clone(), fr.clone()
        sw[:, [i, j]], swr[:, [i, j]] = fx[:, [j, i]], fr[:, [j, i]]
        eq, eqr = fx.clone(), fr.clone()
        eq[:, j], eqr[:, j] = fx[:, i], fr[:, i]
        xs = torch.cat([fx, sw, eq]).view((3 * n,) + tuple(x.shape[1:]))
        rs = torch.cat([fr, swr, eqr]).view_as(xs)
        kw = repeat_options(options, n, 3)
        if opt is not None:
            kw[opt] = rs
        if isinstance(method, str):
            kw.setdefault("batch_size", batch_size)
        v = _flat(explain_values(model, xs, method, _repeat_target(fixed, 3), kw).detach().cpu().to(torch.float64))
        a, b, c = v[:n], v[n:2 * n], v[2 * n:]
        swap_gap = torch.maximum((a[:, i] - b[:, j]).abs(), (a[:, j] - b[:, i]).abs())
        equal_gap = (c[:, i] - c[:, j]).abs()
        viol = torch.maximum(swap_gap, equal_gap)
        per_pair[(i, j)] = {"swap_gap": to_np(swap_gap), "equal_gap": to_np(equal_gap)}
        size = torch.maximum(size, viol)
        scale = torch.maximum(scale, v.abs().reshape(3, n, -1).amax(dim=(0, 2)))
    passed = _tolerance(size, scale, atol, rtol)
    return MetricResult("symmetry", float(size.max()) if pairs else 0.0, to_np(size), to_np(passed),
                        {"pairs": pairs, "per_pair": per_pair, "reference_option": opt, "atol": atol, "rtol": rtol})
