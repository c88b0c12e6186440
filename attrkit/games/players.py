"""Players: integer labels grouping the features of an input (or of a layer activation) into the
superpixels ``S_p`` of the thesis' segmentation ``h_x`` (Definition 2.22).

The helpers that make labels live in :mod:`attrkit.games.partitions` (re-exported here). :func:`as_players`
validates any of them (or a user mask), relabels each sample's labels to ``0..n_players-1`` and records the
original ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.checks import from_numpy
from .partitions import _layer_spec, _made_per_sample, default_players, layer_players
from .partitions import features, grid, superpixels  # noqa: F401  (re-exported: the helpers' old home)

# --------------------------------------------------------------------------------------- validation
@dataclass
class Players:
    """Validated players of a batch.

    ``labels`` ``[N, *lshape]`` has ``x.dim()`` dims, each equal to x's or 1 (broadcast, e.g. one label per
    pixel shared by the channels); values ``0..n[i]-1`` per sample. ``ids[i, j]`` is the user's label of
    player ``j`` of sample ``i`` (``-1`` padding), ``relabelled`` says whether they differ from ``0..n_players-1``.
    Positions the user labelled ``-1`` (e.g. padding tokens) are no player: they carry label ``n[i]``, a
    coalition column past the sample's players that games always treat as present, so they keep their input
    values and get attribution 0. ``width`` counts the coalition columns (``max_players``, plus one if some
    sample has such fixed positions).
    """
    labels: torch.Tensor
    n: torch.Tensor
    ids: torch.Tensor
    relabelled: bool
    given_shape: tuple
    width: int | None = None

    @property
    def max_players(self) -> int:
        return int(self.n.max())

    @property
    def columns(self) -> int:
        """Coalition columns: ``max_players`` plus the always-present column of fixed (``-1``) positions."""
        return self.width if self.width is not None else self.max_players

    def masks(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``z [b, L]`` boolean coalitions of samples ``rows`` -> ``[b, *lshape]`` keep-masks (``z[h(i,j)]``)."""
        lab = self.labels[rows]
        b = lab.shape[0]
        return torch.gather(z, 1, lab.reshape(b, -1)).view(lab.shape)

    def counts(self, shape: tuple) -> torch.Tensor:
        """Elements per player ``[N, L]`` in a sample of ``shape`` (labels broadcast over size-1 dims)."""
        per = math.prod(shape) // math.prod(self.labels.shape[1:])
        flat = self.labels.reshape(self.labels.shape[0], -1)
        c = torch.zeros(flat.shape[0], self.columns, dtype=torch.float64, device=flat.device)
        c.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
        return c * per

    def spread(self, phi: torch.Tensor, shape: tuple, share: bool = True) -> torch.Tensor:
        """Player values ``[N, L]`` onto elements ``[N, *shape]``: each element gets its player's value
        (``share=False``, "paint") or that value divided by the player's size (``share=True``: the map sums to
        the player values, so efficiency carries over to ``values.sum()``)."""
        if share:
            phi = phi / self.counts(shape).clamp_min(1).to(phi.dtype)
        lab = self.labels
        v = torch.gather(phi, 1, lab.reshape(lab.shape[0], -1)).view(lab.shape)
        return v.expand((lab.shape[0],) + tuple(shape))

    def display(self) -> torch.Tensor:
        """The labels as users gave them: ``[N, H, W]`` for pixel players of images, else ``[N, *lshape]``."""
        lab = self.labels
        if self.width is not None:                     # fixed positions shown as the user gave them: -1
            n = self.n.to(lab.device).view((-1,) + (1,) * (lab.dim() - 1))
            lab = torch.where(lab == n, torch.full_like(lab, -1), lab)
        if lab.dim() >= 3 and lab.shape[1] == 1 and len(self.given_shape) < lab.dim():
            return lab[:, 0]
        return lab


def as_players(players, x: torch.Tensor, at_layer: bool = False) -> Players:
    """Validate ``players`` (None = defaults, a label tensor/array, or "cells"/"channels" at a layer) for the
    batch ``x`` ``[N, ...]`` and relabel every sample to ``0..n_players-1``."""
    n = x.shape[0]
    if players is None:
        players = default_players(x, at_layer)
    elif isinstance(players, str):
        if not at_layer:
            raise ValueError(f"players={players!r} is only for layer games (layer=...); at the input give a label "
                             "tensor, e.g. ak.grid(x, 4), ak.superpixels(x, 50) or ak.features(x)")
        players = layer_players(x, *_layer_spec(players, x))
    if isinstance(players, Players):
        players = players.labels
    players = from_numpy(players)
    if not isinstance(players, torch.Tensor):
        raise TypeError(f"players must be an integer label tensor (e.g. ak.grid(x, 4)), got {type(players).__name__}")
    if players.is_floating_point() or players.is_complex() or players.dtype == torch.bool:
        raise TypeError(f"players must hold integer labels, got dtype {players.dtype}")
    if players.numel() == 0:
        raise ValueError("players is an empty mask; give one integer label per feature / pixel")
    given = tuple(players.shape)
    lab = _broadcast_labels(players.long().to(x.device), x, players)
    if (lab < -1).any():
        raise ValueError(f"players has negative labels (e.g. {int(lab.min())}); labels must be >= 0, or -1 for "
                         "positions that are no player (kept as they are, e.g. padding tokens)")
    flat = lab.reshape(n, -1)
    fixed = flat < 0
    if bool(fixed.all(1).any()):
        raise ValueError("every label of a sample is negative (-1 = no player); give at least one player >= 0")
    if bool(fixed.any()):
        return _with_fixed(flat, fixed, lab.shape, given, x.device)
    if bool((flat == flat[:1]).all()):        # same labels for every sample: relabel once
        ids0, inv = torch.unique(flat[0], return_inverse=True)
        new = inv.unsqueeze(0).expand_as(flat)
        ids = ids0.unsqueeze(0).expand(n, -1).clone()
        counts = torch.full((n,), ids0.numel(), dtype=torch.long)
    else:
        parts, idl = [], []
        for row in flat:
            u, inv = torch.unique(row, return_inverse=True)
            parts.append(inv)
            idl.append(u)
        new = torch.stack(parts)
        counts = torch.tensor([u.numel() for u in idl], dtype=torch.long)
        ids = torch.full((n, int(counts.max())), -1, dtype=torch.long, device=x.device)
        for i, u in enumerate(idl):
            ids[i, :u.numel()] = u
    relabelled = any(not torch.equal(ids[i, :int(counts[i])].cpu(), torch.arange(int(counts[i]))) for i in range(n))
    return Players(new.reshape(lab.shape).contiguous(), counts, ids, relabelled, given)


def _with_fixed(flat, fixed, shape, given, device) -> Players:
    """Relabel each sample's players to ``0..n_players-1``; its ``-1`` positions get label ``n_players`` (always present)."""
    parts, idl = [], []
    for row, f in zip(flat, fixed):
        u, inv = torch.unique(row[~f], return_inverse=True)
        new = torch.full_like(row, u.numel())
        new[~f] = inv
        parts.append(new)
        idl.append(u)
    counts = torch.tensor([u.numel() for u in idl], dtype=torch.long)
    ids = torch.full((flat.shape[0], int(counts.max())), -1, dtype=torch.long, device=device)
    for i, u in enumerate(idl):
        ids[i, :u.numel()] = u
    relabelled = any(not torch.equal(u.cpu(), torch.arange(u.numel())) for u in idl)
    width = int((counts + fixed.any(1).long().cpu()).max())
    return Players(torch.stack(parts).reshape(shape).contiguous(), counts, ids, relabelled, given, width)


def _broadcast_labels(p: torch.Tensor, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
    """Labels as ``[N, *lshape]`` with ``x.dim()`` dims, each equal to x's size or 1.

    ``[N, *spatial]`` (per sample, shared by the channels) and ``[C, *spatial]`` (one label per element of a
    sample, shared by the batch) have the same shape when ``N == C``. Labels from ``ak.grid`` /
    ``ak.superpixels``, or whose slices are all equal (both readings then give the same players), are read per
    sample; any other such tensor is refused with the two explicit forms ``[N, 1, *spatial]`` and
    ``[1, C, *spatial]``."""
    n, full, spatial = x.shape[0], tuple(x.shape[1:]), tuple(x.shape[2:])
    s = tuple(p.shape)
    if x.dim() >= 3 and s == (n,) + spatial:
        if s == full and n > 1 and not _made_per_sample(given if given is not None else p) \
                and not bool((p == p[:1]).all()):
            raise ValueError(
                f"players of shape {s} are ambiguous for inputs of shape {tuple(x.shape)}: the batch size and the "
                f"channel count are both {n}, so they could label each sample's positions ([N, *spatial], shared by "
                f"the channels) or each element of one sample ([C, *spatial], shared by the batch). Say which: "
                f"players.unsqueeze(1) (shape {(n, 1) + spatial}) for per-sample labels, players.unsqueeze(0) "
                f"(shape {(1,) + full}) for labels shared by every sample")
        return p.unsqueeze(1)
    if x.dim() >= 3 and s == spatial:
        return p.unsqueeze(0).unsqueeze(0).expand((n, 1) + spatial)
    if len(s) == x.dim() and s[0] in (1, n) and all(a in (1, b) for a, b in zip(s[1:], full)):
        return p.expand((n,) + s[1:])
    if s == full:
        return p.unsqueeze(0).expand((n,) + full)
    if len(s) == x.dim() - 1 and all(a in (1, b) for a, b in zip(s, full)):
        return p.unsqueeze(0).expand((n,) + s)
    options = [str((n,) + full), str(full)]
    if x.dim() >= 3:
        options = [str((n,) + spatial), str(spatial)] + options
    raise ValueError(f"players has shape {s}, which does not match the input of shape {tuple(x.shape)}; give "
                     f"labels of shape {' or '.join(options)} (e.g. ak.grid(x, 4) or ak.superpixels(x, 50))")

