"""Batched statistics the metrics share: average ranks, Spearman/Pearson per row, ROC AUC against a mask,
SSIM (Wang et al. 2004) and HOG-feature similarity (Dalal & Triggs 2005)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (1..D, ties share the mean rank) of each row of ``v`` ``[N, D]``, as float64."""
    v = v.detach().to(torch.float64)
    n, d = v.shape
    order = v.argsort(dim=1, stable=True)
    s = v.gather(1, order)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    group = new.long().cumsum(1) - 1 + (torch.arange(n, device=v.device) * d).view(-1, 1)
    pos = torch.arange(1, d + 1, dtype=torch.float64, device=v.device).expand(n, d)
    mean = torch.zeros(n * d, dtype=torch.float64, device=v.device)
    mean = mean.scatter_reduce(0, group.reshape(-1), pos.reshape(-1), reduce="mean", include_self=False)
    out = torch.empty_like(s)
    out.scatter_(1, order, mean[group].view(n, d))
    return out


def pearson(a: torch.Tensor, b: torch.Tensor, constant: float = 0.0) -> torch.Tensor:
    """Pearson correlation of each row pair of ``a``, ``b`` ``[N, D]`` -> ``[N]`` (float64).

    A row that is constant in either input has no defined correlation; it gets ``constant`` (0 by default:
    a flat map shares no ordering with any other map)."""
    a = a.detach().reshape(a.shape[0], -1).to(torch.float64)
    b = b.detach().reshape(b.shape[0], -1).to(torch.float64)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    scale = torch.maximum(a.abs().amax(1), b.abs().amax(1)).clamp_min(1e-300)
    flat = (na <= 1e-12 * scale * a.shape[1] ** 0.5) | (nb <= 1e-12 * scale * b.shape[1] ** 0.5)
    r = (a * b).sum(1) / (na * nb).clamp_min(1e-300)
    return torch.where(flat, torch.full_like(r, constant), r.clamp(-1.0, 1.0))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row pair (``[N, ...]`` flattened per sample) -> ``[N]``."""
    a = a.detach().reshape(a.shape[0], -1)
    b = b.detach().reshape(b.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate maps of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return pearson(ranks(a), ranks(b))


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC AUC of ``scores`` ``[N, D]`` for the boolean ``labels`` ``[N, D]`` per row (Mann-Whitney U with
    average ranks for ties). Rows without positives or without negatives give NaN."""
    scores = scores.detach().reshape(scores.shape[0], -1)
    labels = labels.reshape(labels.shape[0], -1).bool().to(scores.device)
    r = ranks(scores)
    p = labels.sum(1).to(torch.float64)
    q = (~labels).sum(1).to(torch.float64)
    u = (r * labels).sum(1) - p * (p + 1) / 2
    auc = u / (p * q)
    return torch.where((p > 0) & (q > 0), auc, torch.full_like(auc, float("nan")))


# ---------------------------------------------------------------------------------------------- SSIM
def _ssim_torch(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win: int = 7) -> torch.Tensor:
    """Mean SSIM of each map pair ``[N, H, W]`` with a ``win x win`` uniform window and sample covariance,
    the defaults of ``skimage.metrics.structural_similarity`` (border of ``win // 2`` cropped)."""
    a = a.to(torch.float64).unsqueeze(1)
    b = b.to(torch.float64).unsqueeze(1)
    k1, k2 = 0.01, 0.03
    npix = win * win
    cov_norm = npix / (npix - 1)
    pool = lambda t: F.avg_pool2d(t, win, stride=1)
    ux, uy = pool(a), pool(b)
    uxx, uyy, uxy = pool(a * a), pool(b * b), pool(a * b)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def _win(h: int, w: int) -> int:
    win = min(7, h, w)
    return win if win % 2 == 1 else win - 1


def normalise_abs(m: torch.Tensor) -> torch.Tensor:
    """``|m| / max |m|`` per map ``[N, ...]`` (a zero map stays zero): the form SSIM and HOG compare."""
    m = m.detach().abs().to(torch.float64)
    top = m.reshape(m.shape[0], -1).amax(1).clamp_min(1e-300)
    return m / top.view(-1, *([1] * (m.dim() - 1)))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair of maps ``[N, H, W]`` after :func:`normalise_abs` (data range 1).

    Uses ``skimage.metrics.structural_similarity`` when scikit-image is installed, else the same formula
    in torch (uniform 7x7 window, sample covariance, K1 = 0.01, K2 = 0.03). Maps smaller than 3x3 give NaN."""
    a, b = normalise_abs(a), normalise_abs(b)
    if a.dim() != 3:
        raise ValueError(f"SSIM compares 2-D maps [N, H, W], got shape {tuple(a.shape)}")
    win = _win(a.shape[1], a.shape[2])
    if win < 3:
        return torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return _ssim_torch(a, b, 1.0, win)
    an, bn = a.cpu().numpy(), b.cpu().numpy()
    return torch.tensor([structural_similarity(an[i], bn[i], data_range=1.0, win_size=win)
                         for i in range(an.shape[0])], dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- HOG
def _hog_numpy(img: np.ndarray, cell: int, bins: int = 9) -> np.ndarray:
    """Cell histograms of unsigned gradient orientations weighted by magnitude, L2-normalised per cell
    (a block-free HOG used only when scikit-image is missing)."""
    gy, gx = np.gradient(img.astype(np.float64))
    mag = np.hypot(gx, gy)
    ang = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    b = np.minimum((ang / (180.0 / bins)).astype(int), bins - 1)
    h, w = img.shape
    ch, cw = h // cell, w // cell
    out = np.zeros((ch, cw, bins))
    for i in range(ch):
        for j in range(cw):
            sl = (slice(i * cell, (i + 1) * cell), slice(j * cell, (j + 1) * cell))
            out[i, j] = np.bincount(b[sl].ravel(), weights=mag[sl].ravel(), minlength=bins)
    out /= np.sqrt((out ** 2).sum(-1, keepdims=True) + 1e-12)
    return out.ravel()


def hog_features(maps: torch.Tensor) -> np.ndarray:
    """HOG descriptors ``[N, D]`` of maps ``[N, H, W]`` (after :func:`normalise_abs`): 9 orientations,
    cells of ``max(2, min(H, W) // 8)`` pixels, 2x2 blocks (``skimage.feature.hog``; a block-free version
    when scikit-image is missing)."""
    m = normalise_abs(maps).cpu().numpy()
    cell = max(2, min(m.shape[1], m.shape[2]) // 8)
    try:
        from skimage.feature import hog
    except ImportError:
        return np.stack([_hog_numpy(im, cell) for im in m])
    block = 2 if min(m.shape[1], m.shape[2]) // cell >= 2 else 1
    return np.stack([hog(im, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(block, block),
                         feature_vector=True) for im in m])


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the HOG descriptors of each map pair ``[N, H, W]`` (Adebayo et al. 2018)."""
    if a.dim() != 3:
        raise ValueError(f"HOG compares 2-D maps [N, H, W], got shape {tuple(a.shape)}")
    return pearson(torch.from_numpy(hog_features(a)), torch.from_numpy(hog_features(b)))
