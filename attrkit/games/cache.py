"""The coalition cache of a :class:`~attrkit.games.game.Game`: each (sample, coalition) is evaluated once; the
values live in one growing table and a dict maps each coalition's key to its row."""
from __future__ import annotations

from typing import Callable

import torch


class CoalitionCache:
    def __init__(self):
        self._slot: dict = {}
        self._store: list[torch.Tensor] = []
        self._stored = 0

    def values(self, z: torch.Tensor, rows: torch.Tensor, evaluate: Callable) -> torch.Tensor:
        """Values ``[B, K]`` of coalitions ``z`` ``[B, L]`` (canonical form) of samples ``rows``: the ones not
        seen before (each distinct one once) from ``evaluate(z, rows)``, the rest from the table."""
        keys = coalition_keys(z, rows)
        uniq, inv = torch.unique(keys, dim=0, return_inverse=True)
        klist = [tuple(k) for k in uniq.tolist()]
        slot = torch.tensor([self._slot.get(k, -1) for k in klist], dtype=torch.long)
        todo = (slot < 0).nonzero().flatten()
        if todo.numel():
            first = torch.full((uniq.shape[0],), -1, dtype=torch.long)
            first.scatter_reduce_(0, inv, torch.arange(len(inv)), reduce="amin", include_self=False)
            src = first[todo]
            vals = evaluate(z[src], rows[src])
            base = self._stored
            self._store.append(vals)
            self._stored += vals.shape[0]
            for j, t in enumerate(todo.tolist()):
                self._slot[klist[t]] = base + j
            slot[todo] = torch.arange(base, base + len(todo))
        store = torch.cat(self._store) if len(self._store) > 1 else self._store[0]
        self._store = [store]
        return store[slot[inv]]

    def within_budget(self, z: torch.Tensor, rows: torch.Tensor, sizes: list[int], budget: int,
                      seen: set) -> tuple[int, int]:
        """How many of the groups (``sizes`` consecutive rows of ``z`` each) fit ``budget`` new evaluations, and
        what they cost (see ``Game.within_budget``); their keys are added to ``seen``."""
        keys = [tuple(k) for k in coalition_keys(z, rows).tolist()]
        used = accepted = start = 0
        for m in sizes:
            new = {k for k in keys[start:start + m] if k not in self._slot and k not in seen}
            if used + len(new) > budget:
                break
            seen |= new
            used += len(new)
            accepted += 1
            start += m
        return accepted, used


def coalition_keys(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``[B, 1 + W]`` int64: the sample index and the coalition packed 62 players per word."""
    b, width = z.shape
    words = (width + 61) // 62
    pad = torch.zeros(b, words * 62, dtype=torch.int64)
    pad[:, :width] = z.to(torch.int64)
    weights = (torch.ones(62, dtype=torch.int64) << torch.arange(62))
    packed = (pad.view(b, words, 62) * weights).sum(2)
    return torch.cat([rows.view(-1, 1), packed], 1)
