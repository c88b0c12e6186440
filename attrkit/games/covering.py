"""Covering families of coalitions: a few rows in which every given set of players shows every pattern.

Used by the receptive-field plans of :mod:`attrkit.games.local`: a position of a local layer depends only on the
players of its set, so a family showing each set every one of its ``2^|S|`` patterns gives every activation
value any coalition can produce at that position.
"""
from __future__ import annotations

import numpy as np


def covering_family(sets: list[list[int]], n_players: int) -> np.ndarray:
    """A family of coalitions ``[m, L]`` (bool) in which every set's players show every one of their
    ``2^|S|`` patterns. Greedy: sets from the largest, each missing pattern goes into the first row whose
    already-fixed bits agree with it (free bits are fixed then), else a new row."""
    cap = 64
    assigned = np.zeros((cap, n_players), dtype=bool)
    value = np.zeros((cap, n_players), dtype=bool)
    m = 0
    for s in _maximal(sets):
        s = np.asarray(s, dtype=np.int64)
        k = len(s)
        w = np.int64(1) << np.arange(k, dtype=np.int64)
        fixed = assigned[:m][:, s] @ w                               # per row: bits of s already fixed
        val = (assigned[:m][:, s] & value[:m][:, s]) @ w             # ... and their values
        full = (1 << k) - 1
        have = set(val[fixed == full].tolist())
        open_rows = fixed != full
        for u in range(1 << k):
            if u in have:
                continue
            ok = open_rows & ((u & fixed) == val)
            r = int(np.argmax(ok)) if ok.any() else -1
            if r < 0:
                if m == cap:
                    cap *= 2
                    assigned = np.vstack([assigned, np.zeros_like(assigned)])
                    value = np.vstack([value, np.zeros_like(value)])
                r, m = m, m + 1
                fixed, val, open_rows = np.append(fixed, 0), np.append(val, 0), np.append(open_rows, True)
            assigned[r, s] = True
            value[r, s] = ((u >> np.arange(k)) & 1).astype(bool)
            fixed[r], val[r], open_rows[r] = full, u, False
    return value[:m].copy()


def _maximal(sets: list[list[int]]) -> list[list[int]]:
    """The sets not contained in another one (a covering of those covers their subsets), largest first."""
    masks = [sum(1 << p for p in s) for s in sets]              # Python ints: any number of players
    order = np.argsort([-len(s) for s in sets], kind="stable")
    keep = []
    for i in order:
        if not any((masks[i] & ~masks[j]) == 0 for j in keep):
            keep.append(i)
    return [sets[i] for i in keep]
