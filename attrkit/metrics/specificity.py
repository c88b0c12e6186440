"""Class specificity (thesis section 3.2, Figure 3.1): on an image holding objects of two classes A and B,
does the map for class A differ from the map for class B, and does each map land on its own object?"""
from __future__ import annotations

import numpy as np
import torch

from ..attribution import Attribution
from ._common import MetricResult, as_maps, check_inputs, nanmean, to_np
from ._stats import spearman
from .localisation import pointing_game, prepare_masks, relevance_mass

__all__ = ["class_specificity", "pair_masks"]


def pair_masks(classes: torch.Tensor, masks: torch.Tensor, by: str = "class") -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the two objects ``(masks_a, masks_b)`` ``[N, H, W]`` for ``classes`` ``[N, 2]``.

    ``by="class"``: ``masks`` is ``[N, n_classes, H, W]`` with one mask per class (as ``data.shapes_pairs``);
    ``by="order"``: ``masks`` is ``[N, 2, H, W]`` in the order of ``classes``' columns."""
    classes = torch.as_tensor(classes).long().cpu()
    if classes.dim() != 2 or classes.shape[1] != 2:
        raise ValueError(f"classes must be [N, 2] (the two classes of each image), got {tuple(classes.shape)}")
    if not isinstance(masks, torch.Tensor) or masks.dim() != 4:
        raise ValueError("masks must be a tensor [N, K, H, W]")
    masks = masks.cpu()
    rows = torch.arange(classes.shape[0])
    if by == "class":
        if int(classes.max()) >= masks.shape[1]:
            raise ValueError(f"class {int(classes.max())} has no mask: masks hold {masks.shape[1]} classes")
        return masks[rows, classes[:, 0]].bool(), masks[rows, classes[:, 1]].bool()
    if by == "order":
        if masks.shape[1] != 2:
            raise ValueError(f"by='order' needs masks [N, 2, H, W], got {tuple(masks.shape)}")
        return masks[:, 0].bool(), masks[:, 1].bool()
    raise ValueError(f"by must be 'class' or 'order', got {by!r}")


def class_specificity(model, x, classes, masks, method="grad_cam", *, masks_by: str = "class",
                      batch_size: int | None = None, seed: int | None = None, progress: bool | None = None,
                      **options) -> MetricResult:
    """For each image and its two classes ``A = classes[:, 0]``, ``B = classes[:, 1]``: the maps ``F^A``, ``F^B``
    (``method`` with ``options``, e.g. ``layer=`` for a layer-level map), their Spearman rank correlation
    (``per_sample``; 1 = the same map for both classes, i.e. not class specific), the relevance mass of each map
    on its own object and on the other object, and the pointing game for each.

    ``method`` may also be a pair of :class:`Attribution` objects ``(attr_a, attr_b)`` computed beforehand.
    ``score`` is the mean rank correlation; ``details`` holds ``mass_a`` (F^A on A), ``mass_b`` (F^B on B),
    ``mass_a_on_b``, ``mass_b_on_a``, ``pointing_a``, ``pointing_b`` per sample and their means.
    """
    x = check_inputs(model, x)
    classes = torch.as_tensor(classes).long()
    ma, mb = pair_masks(classes, masks, masks_by)
    if ma.shape[0] != x.shape[0]:
        raise ValueError(f"{ma.shape[0]} masks for {x.shape[0]} images")
    if isinstance(method, (tuple, list)) and len(method) == 2 and all(isinstance(a, Attribution) for a in method):
        attr_a, attr_b = method
        name = attr_a.method
    else:
        from ..api import explain
        if not isinstance(method, str):
            raise TypeError("method must be a registered method name or a pair of Attributions")
        kw = dict(options, batch_size=batch_size, seed=seed, progress=progress)
        attr_a = explain(model, x, method=method, target=classes[:, 0], **kw)
        attr_b = explain(model, x, method=method, target=classes[:, 1], **kw)
        name = method
    size = tuple(ma.shape[1:])
    map_a, map_b = as_maps(attr_a, size).cpu(), as_maps(attr_b, size).cpu()
    rho = spearman(map_a, map_b)
    out = {
        "mass_a": relevance_mass(map_a, ma).per_sample, "mass_b": relevance_mass(map_b, mb).per_sample,
        "mass_a_on_b": relevance_mass(map_a, mb).per_sample, "mass_b_on_a": relevance_mass(map_b, ma).per_sample,
        "pointing_a": pointing_game(map_a, ma).per_sample, "pointing_b": pointing_game(map_b, mb).per_sample,
    }
    details = dict(out)
    details.update({f"{k}_mean": nanmean(v) for k, v in out.items()})
    details.update({"method": name, "layer": attr_a.layer, "maps_a": to_np(map_a).astype(np.float32),
                    "maps_b": to_np(map_b).astype(np.float32)})
    return MetricResult("class_specificity", nanmean(to_np(rho)), to_np(rho), None, details)
