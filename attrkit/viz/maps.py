"""From an ``Attribution`` to what a picture shows for one sample: the 2-D map, the input image, labels.

Plain NumPy (no matplotlib): the plots and the HTML report both read these views.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..attribution import Attribution
from .colors import boundaries, image_for_display


@dataclass
class SampleView:
    """One sample of one attribution, ready to draw.

    kind: "image" (``map`` is ``[H, W]``), "table" (``map`` is ``[F]``), "series" (``[L]``) or "volume"
    (the depth slice with the most attribution, ``[H, W]``). ``image``: the input as RGB ``[H, W, 3]`` in
    [0, 1] (images and volumes) or the raw input row (tables, series). ``at_layer``: the map was computed
    at a hidden layer and resized to the input (draw it over the image in grey).
    """
    kind: str
    map: np.ndarray
    image: np.ndarray | None
    at_layer: bool
    method: str
    layer: str | None
    target: int | None
    target_label: str
    edges: np.ndarray | None = None     # superpixel/player boundaries [H, W] (images)
    labels: np.ndarray | None = None    # the player labels [H, W] (images)
    output: float | None = None          # the model's target output for the sample
    predicted: int | None = None         # the arg-max class (multi-output models)
    probability: float | None = None     # softmax probability of the target (multi-output models)
    note: str = ""
    over_grey: bool = False             # draw over the grey image by default (layer maps, game/occlusion maps)
    class_names: object = None          # the names used for the labels (given, else the attribution's)


def class_label(cls, class_names=None) -> str:
    """``class_names`` may be a list/tuple, a dict, or None (then the id itself)."""
    if isinstance(class_names, dict) and cls not in class_names and str(cls) in class_names:
        return str(class_names[str(cls)])
    if cls is None:
        return "output"
    if class_names is not None:
        try:
            return str(class_names[cls])
        except (KeyError, IndexError, TypeError):
            pass
    return str(cls)


def sample_target(a: Attribution, index: int) -> int | None:
    t = a.target
    if isinstance(t, torch.Tensor):
        if t.dim() == 0:
            return int(t)
        if t.numel() == len(a):
            return int(t[index])
        return int(t.reshape(-1)[0]) if t.numel() == 1 else None
    if isinstance(t, (int, np.integer)):
        return int(t)
    if isinstance(t, (list, tuple)) and len(t) == len(a):
        return int(t[index])
    return None


def target_label(a: Attribution, index: int, class_names=None) -> str:
    class_names = class_names if class_names is not None else getattr(a, "class_names", None)
    cls = sample_target(a, index)
    if cls is None:
        return str(a.target) if isinstance(a.target, str) else "output"
    return class_label(cls, class_names)


def check_index(a: Attribution, index: int) -> int:
    if not isinstance(a, Attribution):
        raise TypeError(f"expected an attrkit Attribution, got {type(a).__name__}")
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"index must be an int, got {type(index).__name__}")
    n = len(a)
    if not -n <= index < n:
        raise ValueError(f"index {index} is out of range for an attribution of {n} sample(s)")
    return int(index) % n


def view(a: Attribution, index: int = 0, class_names=None) -> SampleView:
    """The :class:`SampleView` of sample ``index`` of ``a``."""
    index = check_index(a, index)
    a.require_single("a plot")
    class_names = class_names if class_names is not None else getattr(a, "class_names", None)
    v = a.values.detach()
    inputs = a.inputs.detach().cpu() if a.inputs is not None else None
    # a map computed at a layer but returned at the input's shape (e.g. Guided Grad-CAM) is a pixel map
    at_layer = a.layer is not None and (inputs is None or tuple(v.shape[1:]) != tuple(inputs.shape[1:]))
    rank = inputs.dim() if inputs is not None else v.dim()
    cls = sample_target(a, index)
    common = dict(method=a.method, layer=a.layer, target=cls, target_label=target_label(a, index, class_names),
                  at_layer=at_layer, over_grey=bool(at_layer or a.players is not None or "window_values" in a.info),
                  class_names=class_names)
    common.update(_prediction(a, index, cls))
    if rank == 2 and v.dim() == 2:
        row = inputs[index].numpy().astype(np.float64) if inputs is not None else None
        return SampleView("table", v[index].cpu().double().numpy(), row, **common)
    hm = a.select(index).heatmap().cpu().double()[0]
    if rank == 4 or (inputs is None and v.dim() == 4):
        img = image_for_display(inputs[index].numpy()) if inputs is not None else None
        labels = _labels(a, index, tuple(hm.shape))
        edges = boundaries(labels) if labels is not None else None
        return SampleView("image", hm.numpy(), img, edges=edges, labels=labels, **common)
    if rank == 3 or (inputs is None and v.dim() == 3):
        row = inputs[index].numpy().astype(np.float64) if inputs is not None else None
        return SampleView("series", hm.numpy(), row, **common)
    if rank == 5 or (inputs is None and v.dim() == 5):
        depth = int(hm.abs().sum(dim=(1, 2)).argmax())
        img = None
        if inputs is not None:
            img = image_for_display(inputs[index][:, depth].numpy())
        sv = SampleView("volume", hm[depth].numpy(), img, **common)
        sv.note = f"depth slice {depth} of {hm.shape[0]} (the one with the most attribution)"
        return sv
    # a layer map of an input of unusual rank: show it flattened as a table
    return SampleView("table", v[index].reshape(-1).cpu().double().numpy(), None, **common)


def _prediction(a: Attribution, index: int, cls) -> dict:
    out = a.outputs
    if out is None:
        return {}
    o = out[index].detach().cpu().double().reshape(-1)
    if o.numel() == 1:
        return {"output": float(o[0])}
    d = {"predicted": int(o.argmax())}
    if cls is not None and 0 <= cls < o.numel():
        d["output"] = float(o[cls])
        p = o if (o.min() >= 0 and abs(float(o.sum()) - 1) < 1e-4) else torch.softmax(o, 0)
        d["probability"] = float(p[cls])
    return d


def _labels(a: Attribution, index: int, size: tuple) -> np.ndarray | None:
    """Player labels resized (nearest) to the map size; None without players."""
    p = a.players
    if p is None:
        return None
    p = p.detach().cpu()
    if p.dim() >= 3 and p.shape[0] == len(a):
        p = p[index]
    while p.dim() > 2:           # [C, H, W] -> [H, W] (players are the same across channels)
        p = p[0]
    if p.dim() != 2:
        return None
    if tuple(p.shape) != size:
        p = F.interpolate(p[None, None].double(), size=size, mode="nearest")[0, 0].long()
    return p.numpy()


def resize_nearest(m: np.ndarray, size: tuple) -> np.ndarray:
    t = torch.as_tensor(np.asarray(m, dtype=np.float64))[None, None]
    return F.interpolate(t, size=size, mode="nearest")[0, 0].numpy()
