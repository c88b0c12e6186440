"""Players: integer labels grouping the features of an input (or of a layer activation) into the
superpixels ``S_p`` of the thesis' segmentation ``h_x`` (Definition 2.22).

Helpers return a plain ``LongTensor`` of labels: ``features`` (tables, optional column groups), ``grid``
(k x k cells), ``superpixels`` (scikit-image SLIC / quickshift / Felzenszwalb) and ``layer_players``
(cells or channels of a layer activation). :func:`as_players` validates any of these (or a user mask),
relabels each sample's labels to ``0..l-1`` and records the original ids.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Sequence

import torch

ALGORITHMS = ("slic", "quickshift", "felzenszwalb")


def _spatial(x: torch.Tensor) -> tuple[int, ...]:
    """Spatial dims: ``x.shape[2:]`` for ``[N, C, ...]``, the feature dim for tables ``[N, F]``."""
    return tuple(x.shape[2:]) if x.dim() >= 3 else tuple(x.shape[1:])


def _check_x(x, name="x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            import numpy as np
            if isinstance(x, np.ndarray):
                return torch.from_numpy(x)
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(f"{name} must be a torch.Tensor batch [N, ...], got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------------------------- helpers
def features(x: torch.Tensor, groups=None) -> torch.Tensor:
    """One player per column of a table ``[N, F]`` (per element for other shapes), or per group.

    ``groups``: a list of column-index lists (``[[0, 1], [4]]``; columns in no group stay players of their
    own, after the groups) or a length-F sequence of group ids per column. Returns ``[N, F]`` labels.

    >>> features(torch.zeros(2, 4), groups=[[1, 3]])[0].tolist()
    [1, 0, 2, 0]
    """
    if isinstance(x, (tuple, list, dict)):
        from .packing import per_input
        return per_input(features, x, groups)
    x = _check_x(x)
    shape = tuple(x.shape[1:])
    f = math.prod(shape)
    if groups is None:
        lab = torch.arange(f)
    else:
        groups = list(groups)
        if len(groups) == 0:
            raise ValueError("groups is empty; give a list of column-index lists or one group id per column")
        if all(isinstance(g, (list, tuple, range, torch.Tensor)) for g in groups):
            lab = torch.full((f,), -1, dtype=torch.long)
            for k, g in enumerate(groups):
                idx = torch.as_tensor(list(g) if not isinstance(g, torch.Tensor) else g, dtype=torch.long).reshape(-1)
                if idx.numel() == 0:
                    raise ValueError(f"group {k} is empty")
                if (idx < 0).any() or (idx >= f).any():
                    raise ValueError(f"group {k} has column indices outside 0..{f - 1}: {idx.tolist()}")
                if (lab[idx] >= 0).any() or idx.unique().numel() != idx.numel():
                    raise ValueError(f"group {k} repeats a column that is already in a group; each column "
                                     "may belong to one group only")
                lab[idx] = k
            rest = (lab < 0).nonzero().flatten()
            lab[rest] = torch.arange(len(groups), len(groups) + rest.numel())
        else:
            ids = torch.as_tensor(groups)
            if ids.is_floating_point() or ids.numel() != f:
                raise ValueError(f"groups must be column-index lists or {f} integer group ids (one per column), "
                                 f"got {ids.numel()} values of dtype {ids.dtype}")
            lab = torch.unique(ids.long(), return_inverse=True)[1]
    return lab.view(shape).unsqueeze(0).expand((x.shape[0],) + shape).contiguous()


def grid(x: torch.Tensor, cells=4) -> torch.Tensor:
    """Equal cells over the spatial dims: ``cells`` per dim (int or tuple), row-major labels.

    Images ``[N, C, H, W]`` give ``[N, H, W]`` labels (all channels of a cell are one player); series
    ``[N, C, L]`` give ``[N, L]``; tables ``[N, F]`` give ``[N, F]`` with ``cells`` contiguous blocks.
    At a layer, ``players="grid:K"`` (or ``grid(activation, K)``) groups the layer's cells into K x K blocks.

    >>> grid(torch.zeros(1, 3, 4, 4), cells=2)[0].tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """
    if isinstance(x, (tuple, list, dict)):
        from .packing import per_input
        return per_input(grid, x, cells)
    x = _check_x(x)
    spatial = _spatial(x)
    cells = _per_dim(cells, len(spatial), "cells")
    for c, s in zip(cells, spatial):
        if c > s:
            raise ValueError(f"grid of {cells} cells does not fit spatial size {spatial}: at most one cell per "
                             "position along each dim")
    lab = torch.zeros(spatial, dtype=torch.long)
    for d, (c, s) in enumerate(zip(cells, spatial)):
        idx = torch.div(torch.arange(s) * c, s, rounding_mode="floor")
        view = [1] * len(spatial)
        view[d] = s
        lab = lab * c + idx.view(view)
    return _per_sample(lab.unsqueeze(0).expand((x.shape[0],) + spatial).contiguous())


def superpixels(x: torch.Tensor, n: int = 50, algorithm: str = "slic", **kwargs) -> torch.Tensor:
    """Superpixels of each image ``[N, C, H, W]`` with scikit-image, returned as ``[N, H, W]`` labels ``0..l-1``.

    None of the algorithms hits a segment count exactly (SLIC's ``n_segments`` is a hint that small images
    miss by far), so each image's size parameter — ``n_segments`` (slic), ``scale`` (felzenszwalb),
    ``kernel_size`` (quickshift) — is searched to bring the count as close to ``n`` as it gets; pass that
    parameter yourself to skip the search. Other keyword arguments go to scikit-image (slic: compactness 10
    for colour images in Lab space, 0.1 for grey ones). Images are min-max scaled per image first.
    """
    if isinstance(x, (tuple, list, dict)):
        raise TypeError("superpixels segment one image batch; for several inputs build the players per input, "
                        "e.g. (ak.superpixels(img, 50), ak.features(table)) (labels are then shifted apart with "
                        "t + offset, or shared on purpose to make one player span inputs)")
    x = _check_x(x)
    if x.dim() != 4:
        raise ValueError(f"superpixels needs images [N, C, H, W], got shape {tuple(x.shape)}; use ak.grid for "
                         "series/volumes or ak.features for tables")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive number of superpixels, got {n!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown superpixel algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    try:
        import numpy as np
        from skimage import segmentation
    except ImportError:
        raise ImportError("superpixels needs scikit-image: pip install 'attrkit[image]' "
                          "(or use ak.grid, which needs nothing)") from None
    size = x.shape[2] * x.shape[3]
    out = []
    for img in x.detach().cpu().double():
        lo, hi = img.min(), img.max()
        a = ((img - lo) / (hi - lo) if hi > lo else img * 0).permute(1, 2, 0).numpy()
        colour = a.shape[2] > 1
        img2, axis = (a, -1) if colour else (a[..., 0], None)
        opts = dict(kwargs)
        if algorithm == "slic":
            opts = {"compactness": 10.0 if colour else 0.1, "start_label": 0, **opts}
            run = lambda k: segmentation.slic(img2, n_segments=int(k), channel_axis=axis, **opts)
            param, p0, bounds, increasing, integer = "n_segments", n, (1, 4 * size), True, True
        elif algorithm == "felzenszwalb":
            opts = {"sigma": 0.5, "min_size": 1, **opts}
            run = lambda s: segmentation.felzenszwalb(img2, scale=s, channel_axis=axis, **opts)
            param, p0, bounds, increasing, integer = "scale", 100.0, (1e-2, 1e5), False, False
        else:
            rgb = a if a.shape[2] == 3 else np.repeat(a, 3, axis=2) if a.shape[2] == 1 else None
            if rgb is None:
                raise ValueError("quickshift needs 1- or 3-channel images; use algorithm='slic' for others")
            opts = {"ratio": 0.5, **opts}
            run = lambda k: segmentation.quickshift(rgb, kernel_size=k, **{"max_dist": 4 * k, **opts})
            param, p0, bounds, increasing, integer = "kernel_size", 3.0, (1.0, max(a.shape[:2])), False, False
        if param in opts:
            seg = run(opts.pop(param))
        else:
            seg = _search(run, n, p0, bounds, increasing, integer)
        seg = np.unique(seg, return_inverse=True)[1].reshape(seg.shape)
        out.append(torch.as_tensor(seg, dtype=torch.long))
    return _per_sample(torch.stack(out))


def _search(run, n, p, bounds, increasing, integer, steps=10):
    """Find the size parameter whose segmentation has the count closest to ``n`` (secant steps in log space,
    bisection when they leave the bracket)."""
    import numpy as np
    lo, hi = bounds
    best, best_err, tried = None, None, set()
    for _ in range(steps):
        p = int(round(p)) if integer else p
        if p in tried:
            break
        tried.add(p)
        seg = run(p)
        k = len(np.unique(seg))
        if best is None or abs(k - n) < best_err:
            best, best_err = seg, abs(k - n)
        if k == n:
            break
        if (k > n) == increasing:
            hi = p
        else:
            lo = p
        guess = p * (n / max(k, 1)) ** (1 if increasing else -1)
        p = guess if lo < guess < hi else math.sqrt(lo * hi)
        if integer and int(round(p)) in (lo, hi) and hi - lo <= 1:
            break
    return best


def layer_players(activation: torch.Tensor, kind: str = "cells", cells=None) -> torch.Tensor:
    """Players of a layer activation ``[N, C, *spatial]``: ``"cells"`` — every spatial position (or a grid of
    ``cells``) is one player holding all its channels (the thesis' 7x7 cells of VGG16); ``"channels"`` — each
    channel is a player. Dense activations ``[N, F]`` get one player per unit. Labels broadcast to the
    activation: ``[N, 1, *spatial]`` or ``[N, C, 1, ...]``."""
    a = _check_x(activation, "activation")
    if kind not in ("cells", "channels"):
        raise ValueError(f"layer players must be 'cells' or 'channels', got {kind!r}")
    if a.dim() == 2:
        return features(a)
    if kind == "channels":
        lab = torch.arange(a.shape[1]).view((1, -1) + (1,) * (a.dim() - 2))
        return lab.expand((a.shape[0], a.shape[1]) + (1,) * (a.dim() - 2)).contiguous()
    spatial = tuple(a.shape[2:])
    lab = grid(a, cells) if cells is not None else \
        torch.arange(math.prod(spatial)).view(spatial).unsqueeze(0).expand((a.shape[0],) + spatial)
    return lab.unsqueeze(1).contiguous()


def _layer_spec(spec: str, activation: torch.Tensor) -> tuple:
    """``"cells"`` / ``"channels"`` / ``"grid:K"`` (the layer's cells grouped into K x K blocks) -> the
    arguments of :func:`layer_players`."""
    kind, sep, num = spec.partition(":")
    if not sep:
        return (spec,)
    if kind not in ("grid", "cells"):
        raise ValueError(f"players={spec!r}: at a layer give 'cells', 'channels' or 'grid:K' (K x K blocks of cells)")
    try:
        k = int(num)
    except ValueError:
        raise ValueError(f"players={spec!r}: {num!r} is not a whole number of blocks per side") from None
    spatial = tuple(activation.shape[2:])
    if activation.dim() < 3:
        raise ValueError(f"players={spec!r}: the layer's activation {tuple(activation.shape)} has no spatial cells "
                         "to group; use 'cells' (one player per unit)")
    if k < 1 or any(k > s for s in spatial):
        raise ValueError(f"players={spec!r}: the layer has {'x'.join(map(str, spatial))} cells; K must be 1.."
                         f"{min(spatial)}")
    return "cells", k


def default_players(x: torch.Tensor, at_layer: bool = False) -> torch.Tensor:
    """Tables: one player per feature. Images: a 4 x 4 grid (16 players); series 16 segments; volumes 2x2x2.
    Layer activations: one player per spatial cell (or per unit of a dense layer)."""
    if at_layer:
        return layer_players(x, "cells")
    if x.dim() == 2:
        return features(x)
    spatial = _spatial(x)
    per = {1: 16, 2: 4}.get(len(spatial), 2)
    return grid(x, tuple(min(per, s) for s in spatial))


def _per_dim(v, nd: int, name: str) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v,) * nd
    try:
        v = tuple(int(c) for c in v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got {v!r}") from None
    if len(v) != nd or any(c < 1 for c in v):
        raise ValueError(f"{name} must be a positive int or a tuple of {nd} positive ints, got {v!r}")
    return v


# --------------------------------------------------------------------------------------- validation
@dataclass
class Players:
    """Validated players of a batch.

    ``labels`` ``[N, *lshape]`` has ``x.dim()`` dims, each equal to x's or 1 (broadcast, e.g. one label per
    pixel shared by the channels); values ``0..n[i]-1`` per sample. ``ids[i, j]`` is the user's label of
    player ``j`` of sample ``i`` (``-1`` padding), ``relabelled`` says whether they differ from ``0..l-1``.
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
    batch ``x`` ``[N, ...]`` and relabel every sample to ``0..l-1``."""
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
    if not isinstance(players, torch.Tensor):
        try:
            import numpy as np
            if isinstance(players, np.ndarray):
                players = torch.from_numpy(players)
        except ImportError:  # pragma: no cover
            pass
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
    """Relabel each sample's players to ``0..l-1``; its ``-1`` positions get label ``l`` (always present)."""
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


_MADE_PER_SAMPLE: dict = {}


def _per_sample(labels: torch.Tensor) -> torch.Tensor:
    """Remember (while it lives) that ``labels`` ``[N, *spatial]`` came from a helper that labels each sample's
    positions, so it is never read as per-channel labels ``[C, *spatial]`` when ``N == C``."""
    key = id(labels)
    _MADE_PER_SAMPLE[key] = weakref.ref(labels, lambda _r, k=key: _MADE_PER_SAMPLE.pop(k, None))
    return labels


def _made_per_sample(p: torch.Tensor) -> bool:
    ref = _MADE_PER_SAMPLE.get(id(p))
    return ref is not None and ref() is p


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

