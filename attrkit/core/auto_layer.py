"""The automatic layer of CAMs: the output of the model's last stage.

One forward and backward pass of the first sample, with a hook on every module, records each module's output.
Candidates are outputs that read as a map (:mod:`attrkit.core.token_grid`: channels-first maps with more than
one cell, channels-last maps, token grids), from modules called once, that are not pooling layers and not views
of their input (``Identity``, ``Permute``, ``Flatten``); pooling layers are skipped too, so a final max-pool
hands over to the rectified maps before it (VGG: ``features.29`` of VGG16, Grad-CAM's relu5_3). Token layers count only as elements of a stack of
blocks (``blocks.11``, ``encoder.layer.3``), not as the projections inside one. A candidate whose gradient on its
grid is exactly zero is skipped: the output does not depend on it (a ViT classifying from its class token: the
patch tokens after the last block reach nothing, so the chosen layer is the one before it).

The last candidate in execution order is the last feature map before pooling and head. It is then widened to
the outermost module producing the very same tensor whose outputs inside are all at that resolution — the
stage (torchvision ResNet: ``layer4``, not ``layer4.1.conv2``; DenseNet: ``features.norm5``, since ``features``
holds earlier resolutions; VGG: its last ReLU; Swin: ``norm``; ViT: the last block whose patch tokens reach the
output).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .modules import require_hooks
from .token_grid import GridView, read_grid

_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
          nn.AvgPool2d, nn.AvgPool3d)


@dataclass
class LayerChoice:
    name: str
    module: nn.Module
    why: str
    view: GridView | None = None


@dataclass
class _Call:
    order: int
    name: str
    module: nn.Module
    out: torch.Tensor
    is_view: bool


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _in_place(module: nn.Module) -> bool:
    return bool(getattr(module, "inplace", False)) and not isinstance(module, nn.modules.dropout._DropoutNd)


def _storages(args) -> set:
    keep = set()
    for a in args:
        if isinstance(a, torch.Tensor):
            keep.add(a.untyped_storage().data_ptr())
        elif isinstance(a, (tuple, list)):
            keep |= _storages(a)
    return keep


def _stacked(model: nn.Module) -> set:
    """Names of modules that are elements of a stack: children of a ModuleList, or of a Sequential holding >= 2
    modules of the same class."""
    names = set()
    for pname, parent in model.named_modules():
        if isinstance(parent, (nn.ModuleList, nn.Sequential)):
            kids = list(parent.named_children())
            for cname, child in kids:
                if isinstance(parent, nn.ModuleList) or sum(type(c) is type(child) for _, c in kids) >= 2:
                    names.add(f"{pname}.{cname}" if pname else cname)
    return names


def _record(model, x, forward):
    calls, counts, handles = [], {}, []

    def hook(name):
        def fn(module, args, out):
            counts[name] = counts.get(name, 0) + 1
            t = _first_tensor(out)
            if t is not None and t.is_floating_point():
                # an output on its input's storage is a view (Identity, Flatten) unless the module changed it in
                # place (nn.ReLU(inplace=True): torchvision's pattern — its output is the stage's map)
                shared = t.untyped_storage().data_ptr() in _storages(args) and not _in_place(module)
                calls.append(_Call(len(calls), name, module, t, shared))
        return fn

    def emb_hook(module, args, out):          # token ids: gradients start at the embedding
        return out.detach().requires_grad_()

    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(hook(name)))
        if isinstance(m, nn.Embedding):
            handles.append(m.register_forward_hook(emb_hook))
    row = x[:1].detach()
    if row.is_floating_point():
        row.requires_grad_(True)
    try:
        with torch.enable_grad():
            out = (forward or model)(row)
    finally:
        for h in handles:
            h.remove()
    return calls, counts, out


def choose_layer(model, x: torch.Tensor, forward=None, what: str = "a CAM method", input_layout=None) -> LayerChoice:
    """The automatic layer (see the module docstring); ``forward(row)`` runs the model on one row of ``x``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} needs a torch.nn.Module model (to find its layers), or pass layer=")
    require_hooks(model, what)
    calls, counts, out = _record(model, x, forward)
    stack = _stacked(model)
    cands = []
    pooled = {id(c.out) for c in calls if isinstance(c.module, _POOLS)}    # containers ending in a pool count as it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in calls:
            if counts[c.name] != 1 or c.is_view or id(c.out) in pooled or c.out.dim() < 3:
                continue
            try:
                view = read_grid(model, x, (x.shape[0],) + tuple(c.out.shape[1:]), c.module, c.name,
                                 input_layout=input_layout)
            except ValueError:
                continue
            cells = 1
            for g in view.grid:
                cells *= g
            if cells < 2 or (view.layout == "tokens" and c.name not in stack):
                continue
            cands.append((c, view))
    if not cands:
        raise ValueError(f"{what} needs a layer whose output is a spatial map, but the model has no Conv1d/Conv2d/"
                         "Conv3d layer or token block whose output reads as one ([N, channels, *spatial], tokens "
                         "of a patch grid, or channels-last); pass layer= (and reshape= if its layout is unusual)")
    skipped = _unreached(cands, out)
    live = [cv for cv, dead in zip(cands, skipped) if not dead]
    if not live:
        raise ValueError(f"{what}: the model's output does not depend on any spatial layer's map (zero gradient at "
                         "each); pass layer=")
    last, view = live[-1]
    name, module = _widen(last, calls, counts, stack if view.layout == "tokens" else None)
    grid = " x ".join(map(str, view.grid))
    why = (f"{name!r}: the output of the last stage — the last module whose output is the final {grid} "
           f"{'token grid' if view.layout == 'tokens' else 'feature map'} before pooling/head")
    if name != last.name:
        why += f" (the same tensor as {last.name!r})"
    dead_after = [c.name for (c, _), dead in zip(cands, skipped) if dead and c.order > last.order]
    if dead_after:
        why += (f"; later layer(s) {', '.join(repr(d) for d in dead_after[-2:])} skipped: their grid does not reach "
                "the output (zero gradient, e.g. a class-token readout)")
    if view.layout != "channels_first":
        why += f"; read as {view.describe()}"
    cells = 1
    for g in view.grid:
        cells *= g
    if cells < 4:
        warnings.warn(f"the automatic layer {name!r} gives a map of only {cells} cells; pass layer= with an earlier "
                      "layer for a finer map", stacklevel=4)
        why += " (doubtful: fewer than 4 cells)"
    return LayerChoice(name, module, why, view)


def _unreached(cands, out) -> list[bool]:
    """Per candidate: True when the output's gradient on its grid is exactly zero."""
    out = _first_tensor(out) if not isinstance(out, torch.Tensor) else out
    tensors = [c.out for c, _ in cands]
    if out is None or not out.requires_grad or not any(t.requires_grad for t in tensors):
        return [False] * len(cands)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(out.shape, generator=g, dtype=torch.float64).to(out.device, out.dtype) + 0.5
    idx = [i for i, t in enumerate(tensors) if t.requires_grad]
    grads = torch.autograd.grad((out * w).sum(), [tensors[i] for i in idx], allow_unused=True)
    dead = [False] * len(cands)
    for i, gr in zip(idx, grads):
        view = cands[i][1]
        dead[i] = gr is None or not bool(view.maps(gr).ne(0).any())
    return dead


def _widen(last: _Call, calls, counts, stack=None) -> tuple[str, nn.Module]:
    """Of the modules producing the last candidate's tensor, the outermost whose recorded outputs all lie on the
    same grid (the stage; for token layers: an element of the stack of blocks, not the stack); the innermost
    producer when none does."""
    producers = [c for c in calls if c.out is last.out and counts[c.name] == 1 and not c.is_view
                 and (stack is None or c.name in stack)]
    best = (producers[0].name, producers[0].module) if producers else (last.name, last.module)
    for c in producers:
        inside = [d for d in calls if d.name.startswith(c.name + ".")]
        if all(_same_grid(d.out, last.out) for d in inside):
            best = (c.name, c.module)
    return best


def _same_grid(t: torch.Tensor, ref: torch.Tensor) -> bool:
    """``t`` has the reference's spatial grid (channels-first or -last), or is no map at all (vectors, weights)."""
    if t.dim() < 3:
        return True
    if t.dim() != ref.dim():
        return t.dim() > ref.dim() and ref.dim() == 3       # attention weights [N, heads, T, T] inside a block
    return tuple(t.shape[2:]) == tuple(ref.shape[2:]) or tuple(t.shape[1:-1]) == tuple(ref.shape[1:-1]) \
        or (ref.dim() == 3 and t.shape[1] == ref.shape[1])
