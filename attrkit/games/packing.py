"""Players of several inputs (see :mod:`attrkit.core.inputs`): per-input label tensors packed into labels of
the flat tensor the engines see, and the player helpers (``ak.grid``, ``ak.features``) applied per input."""
from __future__ import annotations

import torch

from .partitions import _made_per_sample, _per_sample, default_players
from .players import Players, _broadcast_labels


def pack_players(players, layout, flat: torch.Tensor) -> torch.Tensor:
    """Players for several inputs (see :mod:`attrkit.core.inputs`) as labels of the flat tensor ``[N, D]``.

    ``None``: each input's default players (a 4 x 4 grid for images, one per column for tables ...), numbered
    apart so no player spans two inputs. A tuple/list/dict with one label tensor per input (any shape
    :func:`as_players` accepts for that input): labels are kept as given, so one label used in two inputs is
    one player spanning both (Captum's ``feature_mask`` convention). A ``[N|1, D]`` tensor is already packed.
    """
    parts = layout.unpack(flat)
    if isinstance(players, Players):
        players = players.labels
    if isinstance(players, torch.Tensor) or type(players).__name__ == "ndarray":
        t = torch.as_tensor(players)
        if t.dim() == 2 and t.shape[1] == layout.width and t.shape[0] in (1, flat.shape[0]):
            return t
        raise ValueError(f"players is one tensor of shape {tuple(t.shape)}, but there are {len(layout)} inputs "
                         f"({layout.describe()}); give a tuple with one label tensor per input "
                         "(e.g. ak.grid(x, 4) on the tuple x)")
    if players is None:
        labels, offset = [], 0
        for p in parts:
            lab = default_players(p).long()
            labels.append(lab + offset)
            offset += int(lab.max()) + 1
    else:
        labels = [torch.as_tensor(lab) if not isinstance(lab, torch.Tensor) else lab
                  for lab in layout.as_list(players, "players")]
    n = flat.shape[0]
    out = []
    for lab, p, name in zip(labels, parts, layout.names):
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise TypeError(f"players[{name!r}] must hold integer labels, got dtype {lab.dtype}")
        try:
            full = _broadcast_labels(lab.long().to(flat.device), p, lab)
        except ValueError as e:
            raise ValueError(f"players[{name!r}]: {e}") from None
        out.append(full.expand((n,) + tuple(p.shape[1:])).reshape(n, -1))
    return torch.cat(out, 1)


def per_input(fn, x, *args, **kwargs):
    """Apply a player helper to each input of a tuple/dict ``x``; labels numbered apart across inputs."""
    items = list(x.items()) if isinstance(x, dict) else list(enumerate(x))
    out, offset = [], 0
    for _, xi in items:
        lab = fn(xi, *args, **kwargs)
        out.append(_per_sample(lab + offset) if _made_per_sample(lab) else lab + offset)
        offset += int(lab.max()) + 1
    return {k: v for (k, _), v in zip(items, out)} if isinstance(x, dict) else tuple(out)
