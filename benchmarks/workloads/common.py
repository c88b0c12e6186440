"""Shared pieces of the workloads: attrkit and peer runners, method availability."""
from __future__ import annotations

import importlib.util

import torch


def have(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def attrkit_method(name: str) -> str | None:
    """None when attrkit has method ``name`` registered, else why not."""
    import attrkit as ak
    try:
        ak.methods()
    except Exception as e:  # noqa: BLE001 - a half-written method module must not stop the suite
        return f"attrkit's method registry fails to load: {type(e).__name__}: {e}"
    if name in ak.methods():
        return None
    return f"attrkit method {name!r} is not registered yet"


def players(name: str):
    """attrkit's player helper ``name`` (``superpixels``, ``grid``, ``features``): ``ak.<name>``, or from
    ``attrkit.games`` while the top-level export is missing."""
    import attrkit as ak
    if hasattr(ak, name):
        return getattr(ak, name)
    from attrkit import games
    return getattr(games, name)


def explain(model, x, method: str, target, **options):
    """``run()`` for attrkit's ``explain`` with fixed arguments (progress bars off)."""
    import attrkit as ak

    def run():
        return ak.explain(model, x, method=method, target=target, progress=False, **options)
    return run


def values(out) -> torch.Tensor:
    """The attribution tensor of any library's result (attrkit ``Attribution``, tensor, array, tuple)."""
    if hasattr(out, "values") and isinstance(getattr(out, "values"), torch.Tensor):
        return out.values
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    return torch.as_tensor(out)


def default_chunk(model, x, grad: bool = True) -> int:
    """The rows per call attrkit picks by default for this model and input."""
    from attrkit.core.budget import rows_per_chunk
    return rows_per_chunk(model, x, grad=grad)
