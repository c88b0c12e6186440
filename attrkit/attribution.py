"""``Attribution``: the one result type every method returns and every consumer reads."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .core.json_values import jsonable

_FORMAT = "attrkit.attribution/1"


@dataclass
class Attribution:
    """Attribution values for a batch, with what produced them and how far to trust them.

    ``values`` has the input's shape (or the layer activation's shape when ``layer`` is set). For several
    inputs (a tuple or dict ``x``) ``values`` and ``inputs`` have that structure: one tensor per input
    (``a.values[0]``, ``a.values["pixel_values"]``); ``a.heatmap(input=...)`` picks one.
    ``info`` holds ``n_evals`` (model rows evaluated), ``seconds``, and the method's own error figures,
    e.g. ``completeness_gap`` (path methods), ``std_err`` (sampled estimators), ``exact``.
    ``feature_names`` / ``class_names`` (from ``model.meta`` when the model has them, or given to ``explain``)
    label every plot and the report and are kept by ``select``, ``part``, ``save`` and ``load``.
    """

    values: Any                 # torch.Tensor, or a tuple/dict of tensors for several inputs
    method: str
    target: Any = None          # [N] class indices, or a label such as "callable:mask_sum"
    layer: str | None = None
    baseline: Any = None        # the reference tensor, a name, or None
    inputs: Any = None          # torch.Tensor, or a tuple/dict of tensors
    outputs: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    players: torch.Tensor | None = None   # integer player labels (coalition methods)
    feature_names: list | None = None     # column names of tabular inputs (labels of plots and the report)
    class_names: Any = None               # list or dict: output index -> class name (model.meta["classes"])

    def __len__(self) -> int:
        return int(_first(self.values).shape[0])

    @property
    def multi(self) -> bool:
        """True when the attribution is of several inputs (``values`` is a tuple or dict)."""
        return isinstance(self.values, (tuple, list, dict))

    @property
    def input_names(self) -> list:
        """The inputs' names (dict keys or positions 0..K-1); ``[]`` for one input or layer values."""
        v = self.values if self.multi else self.inputs if isinstance(self.inputs, (tuple, list, dict)) else None
        if v is None:
            return []
        return list(v) if isinstance(v, dict) else list(range(len(v)))

    def __repr__(self) -> str:
        layer = f", layer={self.layer!r}" if self.layer else ""
        keys = ", ".join(k for k in self.info)
        return (f"Attribution(method={self.method!r}{layer}, values={_shapes(self.values)}, "
                f"target={_short(self.target)}, info=[{keys}])")

    # ----------------------------------------------------------------- views
    def heatmap(self, size: tuple[int, ...] | None = None, input=None) -> torch.Tensor:
        """Per-position map: the channel sum (the channel mean when ``info["channels"] == "same"``: values that
        repeat a player's or an occlusion window's value on every channel), ``[N, H, W]`` for images (``[N, L]`` series, ``[N, D, H, W]``
        volumes). A layer map is resized (bilinear) to the input's spatial size, or ``size``.
        Tabular values ``[N, F]`` are returned as they are. With several inputs ``input=`` (a position or a
        dict key) says which input's map (and, for a layer map, which input's size) to give."""
        v, inputs = self.values, self.inputs
        if self.multi:
            if input is None:
                if len(self.input_names) != 1:
                    raise ValueError(f"this attribution has {len(self.input_names)} inputs "
                                     f"({self.input_names}); say which map to draw with heatmap(input=...)")
                input = self.input_names[0]
            v = _part(v, input)
        if isinstance(inputs, (tuple, list, dict)):
            if input is not None:
                inputs = _part(inputs, input)
            else:
                same = [t for t in (inputs.values() if isinstance(inputs, dict) else inputs) if t.dim() == v.dim()]
                inputs = same[0] if len(same) == 1 else None
        v = v.detach()
        grid = self.info.get("token_grid") if not self.multi else None
        if isinstance(grid, dict) and v.dim() >= 3:       # a token / channels-last layer game: on its patch grid
            from .games.token_players import grid_values
            v = grid_values(v, grid)
            m = v.mean(dim=1) if self.info.get("spread") == "value" else v.sum(dim=1)
            return _resized(m, size, inputs, v.dim())
        if v.dim() <= 2:
            return v.clone()
        # values painted alike on every channel (occlusion windows, game players over all channels): show once
        m = v.mean(dim=1) if self.info.get("channels") == "same" and not self.multi else v.sum(dim=1)
        return _resized(m, size, inputs, v.dim())

    def part(self, input) -> "Attribution":
        """The attribution of one of several inputs (a position or a dict key) as a single-input Attribution
        (values, inputs, players, baseline and per-input info of that input), e.g. to plot it or put it in a
        report. A layer attribution keeps its values and takes that input as ``inputs``."""
        names = self.input_names
        if not names:
            raise ValueError("this attribution is of one input; part() picks one of several inputs")
        if input not in names:
            raise ValueError(f"no input {input!r}; the inputs are {names}")
        k = names.index(input)
        take = lambda v: v[input] if _is_structure(v) and len(v) == len(names) else v
        info = {key: take(val) for key, val in self.info.items()}
        info["input"] = input
        return Attribution(values=take(self.values), method=self.method, target=self.target, layer=self.layer,
                           baseline=take(self.baseline), inputs=take(self.inputs), outputs=self.outputs, info=info,
                           players=take(self.players) if not isinstance(self.players, torch.Tensor) else
                           self.players, feature_names=self.feature_names, class_names=self.class_names)

    def require_single(self, what: str) -> None:
        """Refuse, with the way out, an attribution of several inputs where one input is needed."""
        if self.multi or isinstance(self.inputs, (tuple, list, dict)):
            raise ValueError(f"{what} shows one input, and this attribution has {len(self.input_names)} inputs "
                             f"({self.input_names}); pick one with a.part(input), e.g. a.part({self.input_names[0]!r})")

    def to_shap(self, feature_names=None, output_names=None):
        """This attribution as a ``shap.Explanation`` (values, base_values, data, feature_names, output_names), so
        ``shap.plots.bar/beeswarm/waterfall/heatmap/image`` take it; images as ``[N, H, W, C]`` (SHAP's layout).
        See :func:`attrkit.compat.shap.explanation`."""
        from .compat.shap import explanation
        return explanation(self, feature_names, output_names)

    def to_numpy(self):
        """``values`` as numpy (a tuple/dict of arrays for several inputs)."""
        return _map(lambda t: t.detach().cpu().numpy(), self.values)

    def select(self, index) -> "Attribution":
        """The attribution of a subset of samples (an int, slice, list or boolean mask)."""
        if isinstance(index, int):
            index = [index]
        one = lambda t: t[index] if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == len(self) else t
        pick = lambda t: _map(one, t) if isinstance(t, (tuple, dict)) and all(
            isinstance(u, torch.Tensor) for u in (t.values() if isinstance(t, dict) else t)) else one(t)
        info = {k: pick(v) for k, v in self.info.items()}
        return Attribution(pick(self.values), self.method, pick(self.target), self.layer, pick(self.baseline),
                           pick(self.inputs), pick(self.outputs), info, pick(self.players),
                           feature_names=self.feature_names, class_names=self.class_names)

    # ----------------------------------------------------------------- files
    def save(self, path) -> Path:
        """Save to ``path`` (``.npz``): arrays plus JSON metadata; loading never unpickles code."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"format": _FORMAT, "method": self.method, "layer": self.layer, "info": {},
                                "structures": {}, "feature_names": _names_json(self.feature_names),
                                "class_names": _names_json(self.class_names)}

        def put(key: str, val) -> bool:
            if isinstance(val, (torch.Tensor, np.ndarray)):
                arrays[key] = _np(val)
                return True
            if _is_structure(val):
                names = list(val) if isinstance(val, dict) else list(range(len(val)))
                meta["structures"][key] = {"kind": "dict" if isinstance(val, dict) else "tuple", "names": names}
                for i, nm in enumerate(names):
                    arrays[f"{key}#{i}"] = _np(val[nm])
                return True
            return False

        put("values", self.values)
        for name in ("inputs", "outputs", "players"):
            if getattr(self, name) is not None:
                put(name, getattr(self, name))
        for name in ("target", "baseline"):
            if not put(name, getattr(self, name)):
                meta[name] = jsonable(getattr(self, name))
        for key, val in self.info.items():
            if not put(f"info.{key}", val):
                meta["info"][key] = jsonable(val)
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
        for key, st in meta.get("structures", {}).items():
            parts = [t.pop(f"{key}#{i}") for i in range(len(st["names"]))]
            t[key] = dict(zip(st["names"], parts)) if st["kind"] == "dict" else tuple(parts)
        info = dict(meta["info"])
        info.update({k[5:]: v for k, v in t.items() if k.startswith("info.")})
        return cls(values=t["values"], method=meta["method"], target=t.get("target", meta.get("target")),
                   layer=meta["layer"], baseline=t.get("baseline", meta.get("baseline")),
                   inputs=t.get("inputs"), outputs=t.get("outputs"), info=info, players=t.get("players"),
                   feature_names=meta.get("feature_names"), class_names=_names_back(meta.get("class_names")))


def _names_json(names):
    """Names for the JSON metadata: a list of strings, or a dict (written as [[key, name], ...] so int keys
    survive)."""
    if names is None:
        return None
    if isinstance(names, dict):
        return {"pairs": [[jsonable(k), str(v)] for k, v in names.items()]}
    return [str(n) for n in names]


def _names_back(names):
    if isinstance(names, dict) and "pairs" in names:
        return {k: v for k, v in names["pairs"]}
    return names


def _is_structure(v) -> bool:
    items = v.values() if isinstance(v, dict) else v if isinstance(v, (tuple, list)) else None
    return items is not None and len(v) > 0 and all(isinstance(u, (torch.Tensor, np.ndarray)) for u in items)


def _map(fn, v):
    if isinstance(v, dict):
        return {k: fn(u) for k, u in v.items()}
    if isinstance(v, (tuple, list)):
        return tuple(fn(u) for u in v)
    return fn(v)


def _first(v):
    return next(iter(v.values())) if isinstance(v, dict) else v[0] if isinstance(v, (tuple, list)) else v


def _part(v, key):
    try:
        return v[key]
    except (KeyError, IndexError, TypeError):
        names = list(v) if isinstance(v, dict) else list(range(len(v)))
        raise ValueError(f"no input {key!r}; the inputs are {names}") from None


def _shapes(v):
    if isinstance(v, dict):
        return {k: tuple(u.shape) for k, u in v.items()}
    if isinstance(v, (tuple, list)):
        return tuple(tuple(u.shape) for u in v)
    return tuple(v.shape)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _short(target) -> str:
    if isinstance(target, torch.Tensor):
        vals = target.tolist()
        return str(vals if len(vals) <= 6 else vals[:6] + ["..."])
    return repr(target)


def _resized(m: torch.Tensor, size, inputs, dim: int) -> torch.Tensor:
    """A map ``[N, *spatial]`` resized (bilinear) to ``size`` or to the input's spatial size."""
    spatial = size
    if spatial is None and inputs is not None and inputs.dim() == dim:
        spatial = tuple(inputs.shape[2:])
    if spatial is not None and tuple(m.shape[1:]) != tuple(spatial):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
        m = F.interpolate(m.unsqueeze(1).float(), size=spatial, mode=mode, align_corners=False).squeeze(1)
    return m
