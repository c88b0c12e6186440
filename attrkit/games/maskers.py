"""Maskers: what an absent player becomes — the reference ``r`` of the thesis' mask function
``m_{x,h,r}(z)_e = x_e if z_{h(e)} = 1 else r_e`` (Definition 2.24), kept apart from the estimators (as in
shap's ``Masker``).

A masker gives each sample ``R`` reference tensors ``[N, R, *x.shape[1:]]``; a coalition's value is the mean of
the model's output over the ``R`` masked inputs (``R = 1`` except for a tabular background sample, which
KernelSHAP averages over).
"""
from __future__ import annotations

import math
import numbers

import torch

from ..core.checks import check_finite
from ..core.references import make_reference
from .players import Players

NAMES = ("zeros", "mean", "blur", "noise", "shuffle")


class Masker:
    """A single reference per sample: ``"zeros"``, a number, ``"mean"`` (per-image channel mean; column mean
    for tables), ``"blur"`` (Gaussian blur, ``sigma``), ``"noise"`` (uniform in the image's range, seeded),
    ``"shuffle"`` (each player's own values permuted within the player, seeded) or a baseline tensor that
    broadcasts to the input."""

    def __init__(self, spec="zeros", sigma: float | None = None):
        if isinstance(spec, str) and spec not in NAMES:
            raise ValueError(f"unknown masker {spec!r}; use one of {', '.join(NAMES)}, a number, a baseline tensor "
                             "or ak.Background(rows) for a background sample")
        if isinstance(spec, bool) or not isinstance(spec, (str, numbers.Real, torch.Tensor)) and \
                type(spec).__name__ != "ndarray":
            raise TypeError(f"masker must be a name ({', '.join(NAMES)}), a number, a tensor or a Masker, "
                            f"got {type(spec).__name__}")
        if isinstance(spec, numbers.Real) and not math.isfinite(float(spec)):
            raise ValueError(f"masker {spec!r} is not a finite number: every masked input would hold {spec!r} and "
                             "every value be NaN; give a finite number (e.g. 0.0), a name or a finite tensor")
        if isinstance(spec, torch.Tensor):
            check_finite(spec, "masker")
        self.spec, self.sigma = spec, sigma

    @property
    def name(self) -> str:
        return self.spec if isinstance(self.spec, str) else "constant" if isinstance(self.spec, numbers.Real) \
            else "baseline"

    def references(self, x: torch.Tensor, players: Players, seed: int | None = None) -> torch.Tensor:
        if isinstance(self.spec, str) and self.spec == "shuffle":
            ref = _shuffle(x, players, 0 if seed is None else int(seed))
        else:
            ref = make_reference(self.spec, x, seed=seed, blur_sigma=self.sigma, name="masker")
        return ref.unsqueeze(1)

    def __repr__(self) -> str:
        return f"Masker({self.name!r})"


class Background(Masker):
    """A background sample ``[R, *x.shape[1:]]`` (tabular SHAP): an absent player takes the values of each
    background row in turn and the coalition's value is the mean output over the ``R`` rows
    (``v(S) = mean_r f(x_S, b_r)``, Lundberg & Lee 2017). ``max_rows`` draws a seeded subsample.

    Public as ``ak.Background``: ``ak.explain(model, x, method="kernel_shap", masker=ak.Background(rows))``.
    Each coalition costs ``R`` model rows, so keep ``R`` small (``max_rows=100`` or k-means centres)."""

    def __init__(self, data, max_rows: int | None = None):
        self.parts = None
        if isinstance(data, (tuple, list, dict)) and all(
                isinstance(d, torch.Tensor) or type(d).__name__ == "ndarray"
                for d in (data.values() if isinstance(data, dict) else data)):
            self.parts = data            # one background batch per input: ak.explain packs them (packed())
            data = torch.cat([torch.as_tensor(d).reshape(len(d), -1).float()
                              for d in (data.values() if isinstance(data, dict) else data)], 1)
        if not isinstance(data, torch.Tensor):
            data = torch.as_tensor(data)
        if not data.is_floating_point():
            data = data.float()
        if data.dim() < 2 or data.shape[0] == 0:
            raise ValueError(f"background must be a non-empty batch [R, ...], got shape {tuple(data.shape)}")
        check_finite(data, "background")
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
            raise ValueError(f"max_rows must be a positive int, got {max_rows!r}")
        super().__init__("zeros")
        self.data, self.max_rows = data, max_rows

    @property
    def name(self) -> str:
        return f"background({self.data.shape[0]} rows)"

    def packed(self, layout) -> "Background":
        """This background of several inputs (one ``[R, *shape_k]`` batch per input) as flat rows ``[R, D]``."""
        parts = layout.as_list(self.parts, "background")
        for p, shape, name in zip(parts, layout.shapes, layout.names):
            if tuple(p.shape[1:]) != tuple(shape):
                raise ValueError(f"background[{name!r}] has rows of shape {tuple(p.shape[1:])}, the input "
                                 f"{tuple(shape)}")
        return Background(layout.pack([torch.as_tensor(p) for p in parts]), self.max_rows)

    def references(self, x: torch.Tensor, players: Players, seed: int | None = None) -> torch.Tensor:
        data = self.data.to(device=x.device, dtype=x.dtype)
        if tuple(data.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"background rows have shape {tuple(data.shape[1:])}, the inputs "
                             f"{tuple(x.shape[1:])}; give a background [R, {', '.join(map(str, x.shape[1:]))}]")
        if self.max_rows is not None and data.shape[0] > self.max_rows:
            g = torch.Generator().manual_seed(0 if seed is None else int(seed))
            data = data[torch.randperm(data.shape[0], generator=g)[:self.max_rows].to(x.device)]
        return data.unsqueeze(0)

    def __repr__(self) -> str:
        return f"Background({self.data.shape[0]} rows)"


def as_masker(masker=None, baseline=None, x: torch.Tensor | None = None) -> Masker:
    """``masker=`` (or its alias ``baseline=``) as a :class:`Masker`.

    A table of rows ``[R, *x.shape[1:]]`` whose ``R`` is neither 1 nor the number of samples cannot be one
    reference per sample: it is read as a background set (:class:`Background`, as shap's maskers do), with a
    warning that says so (``ak.Background(rows)`` says it explicitly and gives no warning). With ``R`` equal to
    the number of samples the rows stay per-sample references; wrap them in ``ak.Background`` for a background.
    """
    if masker is not None and baseline is not None:
        raise ValueError("give masker= or baseline= (the same thing), not both")
    which = "masker" if masker is not None else "baseline"
    spec = masker if masker is not None else baseline if baseline is not None else "zeros"
    if isinstance(spec, Masker):
        return spec
    if x is not None and _is_background_table(spec, x):
        import warnings
        rows = torch.as_tensor(spec)
        warnings.warn(f"{which}= got a table of {rows.shape[0]} rows {tuple(rows.shape)} for {x.shape[0]} sample(s): "
                      "it is read as a background set (an absent player takes each row's values in turn and a "
                      f"coalition's value is the mean over the rows); pass {which}=ak.Background(rows) to say so "
                      "and silence this warning", UserWarning, stacklevel=2)
        return Background(rows)
    return Masker(spec)


def _is_background_table(spec, x: torch.Tensor) -> bool:
    if not isinstance(spec, torch.Tensor) and type(spec).__name__ != "ndarray":
        return False
    shape = tuple(spec.shape)
    return len(shape) == x.dim() >= 2 and shape[0] not in (1, x.shape[0]) and shape[1:] == tuple(x.shape[1:])


def _shuffle(x: torch.Tensor, players: Players, seed: int) -> torch.Tensor:
    """Permute each player's positions (on the label grid; broadcast dims such as channels move together)."""
    lab = players.labels
    n = x.shape[0]
    bdims = [d for d in range(1, x.dim()) if lab.shape[d] == 1 and x.shape[d] > 1]
    ldims = [d for d in range(1, x.dim()) if d not in bdims]
    order = [0] + bdims + ldims
    xm = x.permute(order)
    bshape = tuple(xm.shape[1:1 + len(bdims)])
    xf = xm.reshape(n, -1, int(torch.tensor([x.shape[d] for d in ldims]).prod()) if ldims else 1)
    lf = lab.permute(order).reshape(n, -1)
    if bool((players.counts(tuple(lab.shape[1:])) <= 1).all()):
        raise ValueError("the shuffle masker permutes the values inside each player, but every player here is a "
                         "single position; use another masker (zeros, mean, blur, noise)")
    out = torch.empty_like(xf)
    for i in range(n):
        g = torch.Generator().manual_seed(seed)       # per sample: its shuffle does not depend on its batch position
        li = lf[i].to(torch.float64)
        u = torch.rand(li.shape, generator=g, dtype=torch.float64).to(li.device) * 0.5
        src = torch.argsort(li + u)                      # positions grouped by player, random order inside
        dst = torch.argsort(li, stable=True)             # positions grouped by player, original order
        out[i][:, dst] = xf[i][:, src]
    return out.reshape(xm.shape).permute(torch.argsort(torch.tensor(order)).tolist())
