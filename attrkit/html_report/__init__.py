"""The interactive report: ``report(items, path)`` writes one self-contained HTML file (no network, no CDN)
with pickers for sample, method, target class and layer, an opacity slider, the value under the cursor,
each method's error figures, and tables/figures from the evaluation."""
from .build import report

__all__ = ["report"]
