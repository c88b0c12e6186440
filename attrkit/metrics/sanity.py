"""Sanity checks by model-parameter randomisation (Adebayo et al. 2018; thesis Figures 3.3-3.4).

Cascading: re-initialise the parametrised layers from the top (output) layer down, one more at each stage;
independent: re-initialise one layer at a time. At every stage the maps are recomputed for the same target
classes and compared with the original maps: Spearman rank correlation of absolute and of signed values,
SSIM and HOG-feature similarity. A map that does not change when the weights it should explain are destroyed
does not explain the model.

The randomisation runs on a deep copy of the model; the original's weights are never touched (and are
compared bit for bit afterwards: ``details["weights_restored"]``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..attribution import Attribution
from ._common import MetricResult, as_maps, check_inputs, fixed_target, progress_bar, to_np
from ._stats import hog_similarity, spearman, ssim

__all__ = ["model_randomisation", "cascading_randomisation", "independent_randomisation", "parametrised_layers",
           "randomise_layer", "RandomisationResult", "SIMILARITIES"]

SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")


def parametrised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, in registration order (input to output for
    sequential models) — the layers the randomisation walks through."""
    if not isinstance(model, nn.Module):
        raise TypeError("sanity checks need a torch.nn.Module (its layers are re-initialised)")
    return [name for name, m in model.named_modules()
            if name and any(True for _ in m.parameters(recurse=False))]


def randomise_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` in place, seeded: its own ``reset_parameters()`` (PyTorch's default init)
    when it has one, else Gaussian values with each parameter's original standard deviation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                std = float(p.detach().float().std()) if p.numel() > 1 else 1.0
                p.copy_(torch.randn(p.shape, dtype=p.dtype).to(p.device) * (std or 1.0))


@dataclass
class RandomisationResult(MetricResult):
    """A randomisation sanity check: one row per stage (``rows()``), per-sample similarities
    ``similarity[name]`` ``[stages, N]``, the original ``maps`` ``[N, H, W]`` and ``randomised_maps``
    ``[stages, N, H, W]`` for plotting. ``score`` is the mean absolute-value Spearman correlation over all stages
    (lower = the map depends more on the weights)."""
    layers: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    similarity: dict = field(default_factory=dict)
    maps: np.ndarray | None = None
    randomised_maps: np.ndarray | None = None
    mode: str = "cascading"

    def rows(self) -> list[dict]:
        out = []
        for k, stage in enumerate(self.stages):
            row = {"stage": k + 1, "layer": stage[-1] if self.mode == "cascading" else stage[0],
                   "n_randomised": len(stage), "fraction_randomised": len(stage) / max(1, len(self.layers))}
            for s, arr in self.similarity.items():
                row[s] = float(np.nanmean(arr[k])) if np.isfinite(arr[k]).any() else float("nan")
            out.append(row)
        return out

    def __repr__(self) -> str:
        return (f"RandomisationResult({self.mode}, method={self.details.get('method')!r}, "
                f"{len(self.stages)} stages, score={self.score:.3f})")


def _similarities(a: torch.Tensor, b: torch.Tensor, which) -> dict:
    out = {}
    for s in which:
        if s == "spearman_abs":
            out[s] = spearman(a.abs(), b.abs())
        elif s == "spearman":
            out[s] = spearman(a, b)
        elif s == "ssim":
            out[s] = ssim(a, b) if a.dim() == 3 else torch.full((a.shape[0],), float("nan"))
        elif s == "hog":
            out[s] = hog_similarity(a, b) if a.dim() == 3 else torch.full((a.shape[0],), float("nan"))
    return out


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, state: dict) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def model_randomisation(model, x, method="integrated_gradients", target=None, *, mode: str = "cascading",
                        layers=None, seed: int = 0, similarities=SIMILARITIES, batch_size: int | None = None,
                        progress: bool | None = None, layer=None, keep_maps: bool = True,
                        **options) -> RandomisationResult:
    """Model-parameter randomisation test (Adebayo et al. 2018).

    ``method``: a registered name (with ``options`` and ``layer=`` for layer-level maps, e.g. Grad-CAM) or a
    callable ``fn(model, x, target) -> Attribution``. ``mode``: ``"cascading"`` (top layer first, cumulative)
    or ``"independent"`` (one layer at a time). ``layers``: names to randomise in input-to-output order
    (default :func:`parametrised_layers`). The target classes are fixed to those explained on the original
    model (the predicted classes when ``target`` is None). Maps are ``heatmap()`` (channel sums; layer maps
    resized to the input) and compared with :data:`SIMILARITIES`.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    bad = [s for s in similarities if s not in SIMILARITIES]
    if bad:
        raise ValueError(f"unknown similarities {bad}; choose from {SIMILARITIES}")
    x = check_inputs(model, x)
    names = parametrised_layers(model) if layers is None else list(layers)
    known = dict(model.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"the model has no layer(s) {missing}; its parametrised layers are {parametrised_layers(model)}")
    if not names:
        raise ValueError("the model has no parametrised layers to randomise")
    if isinstance(layer, nn.Module):
        from ..core.modules import resolve_layer
        layer = resolve_layer(model, layer)[0]
    fixed, _, _ = fixed_target(model, x, target, None, batch_size)
    kw = dict(options)
    if isinstance(method, str):
        kw.setdefault("batch_size", batch_size)
        kw.setdefault("seed", seed)       # sampled methods draw the same noise for every stage
        if layer is not None:
            kw["layer"] = layer
    size = tuple(x.shape[2:]) if x.dim() > 2 else None

    def maps_of(m) -> torch.Tensor:
        if isinstance(method, str):
            from ..api import explain
            a = explain(m, x, method=method, target=fixed, **kw)
        else:
            a = method(m, x, fixed, **kw) if kw else method(m, x, fixed)
            if not isinstance(a, Attribution):
                a = Attribution(values=a, method="given", inputs=x)
        return as_maps(a, size).cpu() if size is not None else a.values.detach().cpu().to(torch.float64).reshape(x.shape[0], -1)

    original_state = _state(model)
    base_maps = maps_of(model)
    work = copy.deepcopy(model)
    clean = _state(work)
    wmods = dict(work.named_modules())
    order = list(reversed(names)) if mode == "cascading" else list(names)
    stages, sims, rand_maps = [], {s: [] for s in similarities}, []
    for k, name in enumerate(progress_bar(order, len(order), f"{mode} randomisation", progress)):
        if mode == "independent":
            work.load_state_dict(clean)
            stage = [name]
        else:
            stage = order[:k + 1]
        randomise_layer(wmods[name], seed + names.index(name))
        m = maps_of(work)
        for s, v in _similarities(base_maps, m, similarities).items():
            sims[s].append(to_np(v))
        if keep_maps:
            rand_maps.append(to_np(m).astype(np.float32))
        stages.append(stage)
    restored = _same_state(model, original_state)
    if not restored:  # pragma: no cover - the copy makes this impossible unless the model shares storage
        model.load_state_dict(original_state)
    sim = {s: np.stack(v) for s, v in sims.items()}
    first = sim.get("spearman_abs", next(iter(sim.values())))
    per = np.nanmean(first, axis=0)
    meth = method if isinstance(method, str) else getattr(method, "__name__", "callable")
    return RandomisationResult(
        name=f"{mode}_randomisation", score=float(np.nanmean(first)), per_sample=per, passed=None,
        details={"method": meth, "layer": layer, "weights_restored": restored, "seed": seed},
        layers=names, stages=stages, similarity=sim, maps=to_np(base_maps).astype(np.float32),
        randomised_maps=np.stack(rand_maps) if keep_maps else None, mode=mode)


def cascading_randomisation(model, x, method="integrated_gradients", target=None, **kw) -> RandomisationResult:
    """:func:`model_randomisation` with ``mode="cascading"`` (top layer first, cumulative)."""
    return model_randomisation(model, x, method, target, mode="cascading", **kw)


def independent_randomisation(model, x, method="integrated_gradients", target=None, **kw) -> RandomisationResult:
    """:func:`model_randomisation` with ``mode="independent"`` (one layer at a time)."""
    return model_randomisation(model, x, method, target, mode="independent", **kw)
