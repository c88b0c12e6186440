"""``Attribution``: the one result type every method returns and every consumer reads."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_FORMAT = "attrkit.attribution/1"


@dataclass
class Attribution:
    """Attribution values for a batch, with what produced them and how far to trust them.

    ``values`` has the input's shape (or the layer activation's shape when ``layer`` is set).
    ``info`` holds ``n_evals`` (model rows evaluated), ``seconds``, and the method's own error figures,
    e.g. ``completeness_gap`` (path methods), ``std_err`` (sampled estimators), ``exact``.
    """

    values: torch.Tensor
    method: str
    target: Any = None          # [N] class indices, or a label such as "callable:mask_sum"
    layer: str | None = None
    baseline: Any = None        # the reference tensor, a name, or None
    inputs: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    players: torch.Tensor | None = None   # integer player labels (coalition methods)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ""
        keys = ", ".join(k for k in self.info)
        return (f"Attribution(method={self.method!r}{layer}, values={tuple(self.values.shape)}, "
                f"target={_short(self.target)}, info=[{keys}])")

    # ----------------------------------------------------------------- views
    def heatmap(self, size: tuple[int, ...] | None = None) -> torch.Tensor:
        """Per-position map: the channel sum, ``[N, H, W]`` for images (``[N, L]`` series, ``[N, D, H, W]``
        volumes). A layer map is resized (bilinear) to the input's spatial size, or ``size``.
        Tabular values ``[N, F]`` are returned as they are."""
        v = self.values.detach()
        if v.dim() <= 2:
            return v.clone()
        m = v.sum(dim=1)
        spatial = size
        if spatial is None and self.inputs is not None and self.inputs.dim() == v.dim():
            spatial = tuple(self.inputs.shape[2:])
        if spatial is not None and tuple(m.shape[1:]) != tuple(spatial):
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
            m = F.interpolate(m.unsqueeze(1).float(), size=spatial, mode=mode, align_corners=False).squeeze(1)
        return m

    def to_numpy(self) -> np.ndarray:
        return self.values.detach().cpu().numpy()

    def select(self, index) -> "Attribution":
        """The attribution of a subset of samples (an int, slice, list or boolean mask)."""
        if isinstance(index, int):
            index = [index]
        pick = lambda t: t[index] if isinstance(t, torch.Tensor) and t.dim() > 0 and \
            t.shape[0] == len(self) else t
        info = {k: pick(v) for k, v in self.info.items()}
        return Attribution(pick(self.values), self.method, pick(self.target), self.layer, pick(self.baseline),
                           pick(self.inputs), pick(self.outputs), info, pick(self.players))

    # ----------------------------------------------------------------- files
    def save(self, path) -> Path:
        """Save to ``path`` (``.npz``): arrays plus JSON metadata; loading never unpickles code."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {"values": _np(self.values)}
        meta: dict[str, Any] = {"format": _FORMAT, "method": self.method, "layer": self.layer, "info": {}}
        for name in ("inputs", "outputs", "players"):
            if getattr(self, name) is not None:
                arrays[name] = _np(getattr(self, name))
        for name in ("target", "baseline"):
            val = getattr(self, name)
            if isinstance(val, torch.Tensor):
                arrays[name] = _np(val)
            else:
                meta[name] = _jsonable(val)
        for key, val in self.info.items():
            if isinstance(val, (torch.Tensor, np.ndarray)):
                arrays[f"info.{key}"] = _np(val)
            else:
                meta["info"][key] = _jsonable(val)
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Attribution":
        """Load a file written by :meth:`save` (``allow_pickle=False``: no code runs)."""
        with np.load(Path(path), allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise ValueError(f"{path} is not an attrkit attribution file (no metadata)")
            meta = json.loads(bytes(z["__meta__"]).decode())
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} has format {meta.get('format')!r}, expected {_FORMAT!r}")
            t = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != "__meta__"}
        info = dict(meta["info"])
        info.update({k[5:]: v for k, v in t.items() if k.startswith("info.")})
        return cls(values=t["values"], method=meta["method"], target=t.get("target", meta.get("target")),
                   layer=meta["layer"], baseline=t.get("baseline", meta.get("baseline")),
                   inputs=t.get("inputs"), outputs=t.get("outputs"), info=info, players=t.get("players"))


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.generic,)):
        return v.item()
    return str(v)


def _short(target) -> str:
    if isinstance(target, torch.Tensor):
        vals = target.tolist()
        return str(vals if len(vals) <= 6 else vals[:6] + ["..."])
    return repr(target)
