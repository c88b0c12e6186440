"""Global importance: the mean of local attributions' magnitudes over a sample (the lecture's recipe)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from .attribution import Attribution


@dataclass
class Importance:
    """Mean |attribution| per feature over ``n`` samples with its standard error ``std / sqrt(n)``."""
    mean: torch.Tensor
    std_err: torch.Tensor
    n: int
    names: list | None = None

    def ranking(self) -> list:
        """Feature indices (or names) from most to least important."""
        order = torch.argsort(self.mean.reshape(-1), descending=True).tolist()
        return [self.names[i] for i in order] if self.names else order

    def table(self) -> list[dict]:
        names = self.names or [str(i) for i in range(self.mean.numel())]
        m, s = self.mean.reshape(-1).tolist(), self.std_err.reshape(-1).tolist()
        return sorted(({"feature": f, "mean_abs": a, "std_err": b} for f, a, b in zip(names, m, s)),
                      key=lambda r: -r["mean_abs"])


def global_importance(attributions, names: list | None = None, signed: bool = False) -> Importance:
    """Mean of |values| (or of signed values) per feature over all samples, streamed chunk by chunk.

    ``attributions``: an :class:`Attribution`, a tensor ``[N, ...]``, or an iterable of either (e.g. the
    shards of a data-set run), so a large run is aggregated without loading it at once.
    """
    if isinstance(attributions, (Attribution, torch.Tensor)):
        chunks: Iterable = [attributions]
    elif hasattr(attributions, "iter_values"):
        chunks = attributions.iter_values()
    else:
        chunks = attributions
    n, s1, s2 = 0, None, None
    for c in chunks:
        v = c.values if isinstance(c, Attribution) else torch.as_tensor(c)
        if names is None and isinstance(c, Attribution) and c.feature_names is not None:
            names = list(c.feature_names)          # the attribution's own column names
        v = v.detach().to(torch.float64)
        v = v if signed else v.abs()
        if s1 is None:
            s1, s2 = torch.zeros(v.shape[1:], dtype=torch.float64), torch.zeros(v.shape[1:], dtype=torch.float64)
        elif v.shape[1:] != s1.shape:
            raise ValueError(f"attributions of different shapes {tuple(v.shape[1:])} vs {tuple(s1.shape)}")
        s1 += v.sum(0).cpu()
        s2 += (v ** 2).sum(0).cpu()
        n += v.shape[0]
    if n == 0:
        raise ValueError("global_importance needs at least one attribution")
    mean = s1 / n
    var = (s2 / n - mean ** 2).clamp_min(0) * (n / max(n - 1, 1))
    return Importance(mean.float(), (var / n).sqrt().float() if n > 1 else torch.full_like(mean, math.nan).float(),
                      n, names)
