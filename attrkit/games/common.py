"""Small helpers the estimators share: seeded generators, option checks, coalition tables, padding, and the cost
and refusal of exact Shapley values. (The game is built from a ``Problem`` and a ``GameOptions``; its
``result`` turns player values into the ``Result``.) ``m`` is a number of players (the thesis writes ``l``)."""
from __future__ import annotations

import functools
import math

import torch

from ..core.problem import Problem


def generator(problem: Problem) -> torch.Generator:
    """A fresh generator for one sample. Every sample starts from the same seed, so a batch gives the same
    numbers as explaining each sample alone (and any chunk size gives the same numbers)."""
    return torch.Generator().manual_seed(0 if problem.seed is None else int(problem.seed))


def check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_tolerance(tolerance) -> float | None:
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number (largest std error / spread of values), got {tolerance!r}")
    return float(tolerance)


def subsets_of_size(m: int, s: int) -> torch.Tensor:
    """All coalitions of ``s`` out of ``m`` players, ``[C(m, s), m]`` bool."""
    import itertools
    if s == 0:
        return torch.zeros(1, m, dtype=torch.bool)
    idx = torch.tensor(list(itertools.combinations(range(m), s)), dtype=torch.long).view(-1, s)
    return torch.zeros(idx.shape[0], m, dtype=torch.bool).scatter_(1, idx, True)


@functools.lru_cache(maxsize=4)
def all_coalitions(m: int) -> torch.Tensor:
    """All ``2^m`` coalitions ``[2^m, m]`` bool; row ``c`` has player ``j`` iff bit ``j`` of ``c`` is set.
    Cached (the same read-only table for every call with this ``m``: do not modify it in place)."""
    codes = torch.arange(1 << m, dtype=torch.int64)
    return ((codes.unsqueeze(1) >> torch.arange(m)) & 1).bool()


def pad(z: torch.Tensor, width: int) -> torch.Tensor:
    """Coalitions of ``m`` players padded to ``width`` columns (extra columns present; no label uses them)."""
    if z.shape[1] == width:
        return z
    return torch.cat([z, torch.ones(z.shape[0], width - z.shape[1], dtype=torch.bool)], 1)


def _bytes(b: float) -> str:
    if b >= 1 << 50:
        return f"{b:.1e} bytes"
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{int(b)} bytes"


def exact_cost(ls: list[int], k: int, reps: int, block: int) -> tuple[int, int]:
    """Model evaluations and peak bytes of exact Shapley values for samples with ``ls`` players and ``K = k``
    values per coalition: every coalition is evaluated (``reps`` rows each); one sample's value table
    (``2^m x K`` float64), its working copies (half-table differences, weights, coalition sizes) and one block
    of coalitions (``block x m`` bits) are held at a time."""
    top = max(ls) if ls else 0
    evals = sum(1 << m for m in ls) * reps
    memory = (1 << top) * (8 * k * 2 + 8 + 8) + min(block, 1 << top) * (top + 1) * 9
    return evals, memory


def refuse_exact(ls: list[int], max_players: int, reps: int, k: int, memory_limit: int, block: int) -> None:
    """Refuse, before anything is allocated, exact Shapley values that exceed ``max_players`` or whose tables
    exceed ``memory_limit`` bytes; the sentence states the model evaluations and the memory it would take."""
    m = max(ls) if ls else 0
    evals, memory = exact_cost(ls, k, reps, block)
    extra = f" (x {reps} background rows)" if reps > 1 else ""
    cost = (f"exact Shapley values of {m} players need all 2^{m} coalitions: {evals:,} model evaluations for the "
            f"batch{extra} and about {_bytes(memory)} of memory for the coalition values")
    ways = ("Use method='kernel_shap' or 'shapley_sampling' (sampled, with standard errors and tolerance=) or fewer "
            "players (e.g. ak.grid(x, 4) or ak.superpixels(x, 16))")
    if m > max_players:
        raise ValueError(f"{cost} (max_players={max_players}). {ways}, or raise max_players if you can afford it")
    if m > 62:
        raise ValueError(f"{cost}: more than 62 players cannot be enumerated at all. {ways}")
    if memory > memory_limit:
        raise ValueError(f"{cost}, more than the memory budget max_memory={_bytes(memory_limit)}. {ways}, or raise "
                         f"max_memory (bytes) if you can afford it")


def log_binom(m: int, s: int) -> float:
    return math.lgamma(m + 1) - math.lgamma(s + 1) - math.lgamma(m - s + 1)
