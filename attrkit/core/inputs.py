"""Several inputs: a tuple (Captum's convention) or a dict (keyword arguments) of tensors, packed into one flat
per-sample tensor so both engines stay single-tensor.

``Layout`` records each input's name, per-sample shape and offset in the flat tensor ``[N, D]``
(``D = sum_k prod(shape_k)``): ``pack`` concatenates the flattened inputs, ``unpack`` returns views of the
flat rows in each input's shape (gradients flow through it, so the gradient with respect to the flat tensor
unpacks into one gradient per input). Per-input references (baselines, maskers) and per-input player labels are
built in each input's own geometry and then packed, so ``"mean"``/``"blur"``/``"noise"`` and image grids mean
what they mean for that input. Integer inputs (token ids) are never cast: a layout is all-float (cast to the
model's float dtype) or all-integer (kept ``int64``); a mix is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .checks import as_batch, check_finite


@dataclass(frozen=True)
class Layout:
    """How several inputs sit in one flat tensor ``[N, D]``.

    ``kind``: ``"tuple"`` (positional inputs) or ``"dict"`` (keyword inputs); ``names``: the dict keys, or
    ``0..K-1``; ``shapes``: per-sample shape of each input; ``integer``: whether the inputs are integer ids.
    """
    kind: str
    names: tuple
    shapes: tuple
    integer: bool = False

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        out, o = [], 0
        for s in self.sizes:
            out.append(o)
            o += s
        return tuple(out)

    @property
    def width(self) -> int:
        return sum(self.sizes)

    def __len__(self) -> int:
        return len(self.shapes)

    def pack(self, parts) -> torch.Tensor:
        """Inputs (a sequence in layout order, or the user's tuple/dict) -> flat ``[N, D]``."""
        parts = self.as_list(parts)
        return torch.cat([p.reshape(p.shape[0], -1) for p in parts], 1)

    def unpack(self, flat: torch.Tensor) -> list:
        """Flat ``[B, D]`` -> list of ``[B, *shape_k]`` views (traceable: no Python use of the batch size)."""
        return [flat[:, o:o + s].reshape((-1,) + tuple(shape))
                for o, s, shape in zip(self.offsets, self.sizes, self.shapes)]

    def unpack_like(self, t: torch.Tensor) -> list:
        """Any ``[B, D]`` tensor (values, baselines, players) -> per-input ``[B, *shape_k]``; other shapes
        come back unchanged (e.g. layer values)."""
        return self.unpack(t) if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] == self.width else t

    def structure(self, parts: list):
        """A list in layout order -> the user's structure (tuple, or dict keyed by input name)."""
        parts = list(parts)
        return dict(zip(self.names, parts)) if self.kind == "dict" else tuple(parts)

    def as_list(self, value, what: str = "value") -> list:
        """A per-input tuple/list/dict matching the inputs -> list in layout order."""
        if isinstance(value, dict):
            missing = [k for k in self.names if k not in value]
            extra = [k for k in value if k not in self.names]
            if missing or extra:
                raise ValueError(f"{what} is a dict with keys {sorted(map(str, value))}, the inputs have keys "
                                 f"{list(self.names)}; give one entry per input")
            return [value[k] for k in self.names]
        if isinstance(value, (tuple, list)):
            if len(value) != len(self):
                raise ValueError(f"{what} has {len(value)} entries for {len(self)} inputs; give one per input "
                                 "(in the inputs' order)")
            return list(value)
        raise TypeError(f"{what} must be a tuple/list (or dict) with one entry per input, got {type(value).__name__}")

    def describe(self) -> str:
        return ", ".join(f"{n}: {list(s)}" for n, s in zip(self.names, self.shapes))


def is_multi(x) -> bool:
    """True for several inputs: a tuple/list or dict of tensors (arrays)."""
    return isinstance(x, (tuple, list, dict))


def make_layout(x, device=None, dtype=None) -> tuple[Layout, torch.Tensor, Any]:
    """Validate several inputs and pack them: ``(layout, flat [N, D], inputs in the user's structure)``.

    Float inputs go to the model's ``device``/``dtype``; integer inputs keep ``int64`` (never cast to float).
    """
    if isinstance(x, dict):
        if not x:
            raise ValueError("x is an empty dict; give at least one input tensor")
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise TypeError(f"a dict of inputs is passed as keyword arguments, so its keys must be strings; got {bad!r}")
        kind, names, raw = "dict", tuple(x), list(x.values())
    else:
        if len(x) == 0:
            raise ValueError("x is an empty tuple; give at least one input tensor")
        kind, names, raw = "tuple", tuple(range(len(x))), list(x)
    parts = []
    for name, t in zip(names, raw):
        label = f"x[{name!r}]" if kind == "dict" else f"x[{name}]"
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.dtype != torch.bool and not t.is_complex():
            if t.dim() < 1 or t.shape[0] == 0:
                raise ValueError(f"{label} must be a non-empty batch [N, ...], got shape {tuple(t.shape)}")
            parts.append(t if device is None else t.to(device))
            continue
        if type(t).__name__ == "ndarray" and t.dtype.kind in "iu":
            parts.append(torch.as_tensor(t).long() if device is None else torch.as_tensor(t).long().to(device))
            continue
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            raise ValueError(f"{label} has shape {tuple(t.shape)}; every input needs a leading sample dimension "
                             f"[N, ...] (add one with {label}.unsqueeze(0), or .unsqueeze(1) for one value per sample)")
        t = as_batch(t, label)
        if device is not None:
            t = t.to(device=device, dtype=dtype or t.dtype)
        parts.append(t)
    n = {int(p.shape[0]) for p in parts}
    if len(n) != 1:
        sizes = ", ".join(f"{nm}: {p.shape[0]}" for nm, p in zip(names, parts))
        raise ValueError(f"the inputs have different batch sizes ({sizes}); every input needs the same number "
                         "of samples N in its first dimension")
    integer = [not p.is_floating_point() for p in parts]
    if any(integer) and not all(integer):
        which = [str(nm) for nm, i in zip(names, integer) if i]
        raise TypeError(f"inputs {', '.join(which)} hold integers (token ids / codes) and the others floats; "
                        "attributing a mix of integer and float inputs is not supported yet: pass the integer "
                        "inputs through forward_args= / forward_kwargs= (not attributed), or attribute them alone")
    if all(integer):
        parts = [p.long() for p in parts]
    else:
        dt = parts[0].dtype if dtype is None else dtype
        parts = [p.to(dt) for p in parts]
    layout = Layout(kind, names, tuple(tuple(p.shape[1:]) for p in parts), integer=all(integer))
    return layout, layout.pack(parts), layout.structure(parts)


# ------------------------------------------------------------------------------------ references per input
def pack_reference(spec, layout: Layout, flat: torch.Tensor, seed: int | None, name: str = "baseline"):
    """A baseline/masker spec for several inputs -> something the single-tensor engines read the same way.

    Per-input specs (a tuple/dict of names, numbers or tensors, one per input) and the geometry-dependent names
    (``"mean"``, ``"blur"``, ``"noise"``) are made per input in that input's shape and packed to ``[N, D]``
    (tensors ``[M, *shape_k]`` with one ``M`` for all inputs pack to ``[M, D]``: a background set). ``"zeros"``,
    numbers and ``None`` mean the same on the flat tensor and pass through, as do other objects (a ``Masker``).
    """
    from .references import make_reference
    if spec is None or isinstance(spec, bool):
        return spec
    if isinstance(spec, (int, float)):
        return spec
    if isinstance(spec, str):
        if spec in ("mean", "blur", "noise"):
            spec = [spec] * len(layout)
        else:
            return spec
    if isinstance(spec, torch.Tensor) or type(spec).__name__ == "ndarray":
        t = torch.as_tensor(spec)
        if t.dim() == 2 and t.shape[1] == layout.width:
            return t.to(device=flat.device, dtype=flat.dtype)
        raise ValueError(f"{name} is one tensor of shape {tuple(t.shape)}, but there are {len(layout)} inputs "
                         f"({layout.describe()}); give a tuple with one {name} per input")
    if not isinstance(spec, (tuple, list, dict)):
        return spec
    specs = layout.as_list(spec, name)
    parts = layout.unpack(flat)
    rows = {int(torch.as_tensor(s).shape[0]) for s, p in zip(specs, parts)
            if isinstance(s, torch.Tensor) and s.dim() == p.dim() and tuple(s.shape[1:]) == tuple(p.shape[1:])}
    if len(rows) == 1 and all(isinstance(s, torch.Tensor) and s.dim() == p.dim() for s, p in zip(specs, parts)) \
            and rows != {flat.shape[0]}:
        m = rows.pop()                                        # a background set [M, ...] per input
        out = []
        for s, p, nm in zip(specs, parts, layout.names):
            check_finite(s, f"{name}[{nm}]")
            out.append(s.to(device=flat.device, dtype=flat.dtype).reshape(m, -1))
        return torch.cat(out, 1)
    refs = [make_reference(s, p, seed=seed, name=f"{name}[{nm}]") for s, p, nm in zip(specs, parts, layout.names)]
    return layout.pack(refs)


# ------------------------------------------------------------------------------------- forward arguments
def per_sample(value, n: int) -> bool:
    """Whether a non-attributed argument travels with the samples (a tensor whose first dimension is ``N``)."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n


def check_forward_args(forward_args, forward_kwargs) -> tuple[tuple, dict]:
    if forward_args is None:
        forward_args = ()
    elif not isinstance(forward_args, (tuple, list)):
        forward_args = (forward_args,)
    if forward_kwargs is None:
        forward_kwargs = {}
    if not isinstance(forward_kwargs, dict) or any(not isinstance(k, str) for k in forward_kwargs):
        raise TypeError("forward_kwargs must be a dict of keyword arguments (str keys) for the model's forward")
    return tuple(forward_args), dict(forward_kwargs)
