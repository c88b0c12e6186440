"""Label helpers: ``features`` (tables, optional column groups), ``grid`` (k x k cells), ``superpixels``
(scikit-image SLIC / quickshift / Felzenszwalb), ``layer_players`` (cells or channels of a layer activation) and
the defaults of a game's players. Each returns a plain ``LongTensor`` of labels (the superpixels ``S_p`` of the
thesis' segmentation ``h_x``, Definition 2.22); :func:`attrkit.games.players.as_players` validates them."""
from __future__ import annotations

import math
import weakref

import torch

from ..core.checks import per_dim

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
    cells = per_dim(cells, len(spatial), "cells")
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
    """Superpixels of each image ``[N, C, H, W]`` with scikit-image, returned as ``[N, H, W]`` labels ``0..n_players-1``.

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
