"""Reading a layer's output as a map ``[N, channels, *grid]``: convolutional maps, token sequences, channels-last.

CAMs and layer games need a layer output laid out as ``[N, C, *spatial]``. Three layouts occur:

- **channels-first** maps of CNNs ``[N, C, H, W]`` (and ``[N, C, L]``, ``[N, C, D, H, W]``): used as they are;
- **tokens** ``[N, T, D]`` of vision transformers (ViT, DeiT, BEiT): ``T = prefix + h * w`` where the ``prefix``
  leading tokens (class, distillation, register tokens) are dropped and the rest is the patch grid, row-major.
  The grid comes from the patch embedding (the first ``Conv2d`` whose stride equals its kernel, applied to the
  input's ``H, W``; merged stages of hierarchical models read as that grid halved ``m`` times), else from a Hugging
  Face ``config`` (``image_size``, ``patch_size``). For token-id inputs ``[N, L]`` a layer ``[N, L, D]`` is a
  1-D grid of the ``L`` positions (nothing dropped);
- **channels-last** ``[N, H, W, C]`` (torchvision Swin, timm ConvNeXt blocks' internals): channels moved first.

A layout that cannot be read is refused with the way out (``reshape=``): never a map over the wrong axes.
``reshape=`` overrides: ``"channels_first"``, ``"channels_last"``, ``"tokens"`` (grid still inferred),
``{"prefix": 1, "grid": (14, 14)}`` (tokens, fully given), or a callable ``raw -> [N, C, *grid]``
(pytorch-grad-cam's ``reshape_transform``; such a view cannot be written back, so Ablation-CAM refuses it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

_MAX_PREFIX = 16          # class + distillation + register tokens: ViT 1, DeiT 2, registers up to 16
LAYOUTS = ("channels_first", "channels_last", "tokens")


@dataclass
class GridView:
    """How a layer's raw output maps to ``[N, C, *grid]`` and back."""
    layout: str                        # "channels_first" | "channels_last" | "tokens" | "callable"
    grid: tuple = ()                   # spatial shape of the map
    prefix: int = 0                    # tokens dropped before the grid (class / distillation / register tokens)
    source: str = ""                   # how the layout was read (for info)
    fn: Callable | None = None

    def maps(self, t: torch.Tensor) -> torch.Tensor:
        """Raw layer tensor ``t`` -> ``[N, C, *grid]``."""
        if self.layout == "channels_first":
            return t
        if self.layout == "channels_last":
            return t.movedim(-1, 1)
        if self.layout == "tokens":
            n, cells = t.shape[0], _prod(self.grid)
            return t[:, self.prefix:self.prefix + cells, :].transpose(1, 2).reshape((n, t.shape[-1]) + self.grid)
        out = self.fn(t)
        if not isinstance(out, torch.Tensor) or out.dim() < 3 or out.shape[0] != t.shape[0]:
            raise ValueError(f"reshape= returned {getattr(out, 'shape', type(out).__name__)}; it must map the layer "
                             "output to [N, channels, *spatial]")
        return out

    def back(self, m: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """A map ``[N, C, *grid]`` written back into the raw layout (prefix tokens taken from ``raw``)."""
        if self.layout == "channels_first":
            return m
        if self.layout == "channels_last":
            return m.movedim(1, -1).contiguous()
        if self.layout == "tokens":
            out = raw.clone()
            out[:, self.prefix:self.prefix + _prod(self.grid), :] = m.flatten(2).transpose(1, 2)
            return out
        raise ValueError("a reshape= callable cannot be inverted, which this method needs (it changes the layer's "
                         "output); pass reshape='tokens' / 'channels_last' or {'prefix': p, 'grid': (h, w)}")

    def describe(self) -> str:
        if self.layout == "channels_first":
            return "channels-first map [N, C, *spatial], used as it is"
        if self.layout == "channels_last":
            return f"channels-last [N, *spatial, C] read as [N, C, {', '.join(map(str, self.grid))}] ({self.source})"
        if self.layout == "tokens":
            drop = f"first {self.prefix} token(s) (class/register tokens) dropped, " if self.prefix else ""
            return f"tokens [N, T, D]: {drop}the rest read as a {' x '.join(map(str, self.grid))} grid ({self.source})"
        return "the reshape= callable given"


def _prod(s) -> int:
    p = 1
    for v in s:
        p *= int(v)
    return p


def image_input(x: torch.Tensor, layout=None):
    """The spatial input the layer's map is laid over: ``x`` itself, or the first 4-D input of several."""
    if layout is None:
        return x
    for shape in layout.shapes:
        if len(shape) == 3:
            return torch.empty((x.shape[0],) + tuple(shape), device="meta")
    return x


def patch_embedding(model) -> tuple[str, nn.Conv2d] | None:
    """The first ``Conv2d`` whose stride equals its kernel size (> 1): a ViT/Swin-style patch embedding."""
    if not isinstance(model, nn.Module):
        return None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and tuple(m.stride) == tuple(m.kernel_size) and max(m.stride) > 1 \
                and m.padding in ((0, 0), 0, "valid"):
            return name, m
    return None


def _config_grid(model, hw) -> tuple | None:
    for obj in (model, getattr(model, "model", None)):
        cfg = getattr(obj, "config", None)
        patch = getattr(cfg, "patch_size", None) if cfg is not None and not isinstance(cfg, dict) else None
        if patch is not None:
            ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
            return hw[0] // ph, hw[1] // pw
    return None


def _token_grid(model, tokens: int, hw: tuple) -> GridView | None:
    candidates = []
    pe = patch_embedding(model)
    if pe is not None:
        name, conv = pe
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        candidates.append(((hw[0] - kh) // sh + 1, (hw[1] - kw) // sw + 1, f"patch embedding {name!r}, "
                           f"stride {sh}x{sw} on the {hw[0]}x{hw[1]} input"))
    cg = _config_grid(model, hw)
    if cg is not None:
        candidates.append(cg + (f"config.patch_size on the {hw[0]}x{hw[1]} input",))
    for h, w, why in candidates:
        for merge in range(5):                         # hierarchical models: the grid halved per merged stage
            gh, gw = -(-h // 2 ** merge), -(-w // 2 ** merge)
            if 0 <= tokens - gh * gw <= _MAX_PREFIX:
                extra = f", merged {merge}x" if merge else ""
                return GridView("tokens", (gh, gw), tokens - gh * gw, why + extra)
    return None


def _fits(spatial, hw) -> bool:
    """``spatial`` is the input's ``hw`` divided by one common stride (to within the rounding of a convolution)."""
    if len(spatial) != len(hw) or any(s < 1 or s > h for s, h in zip(spatial, hw)):
        return False
    ratios = [h / s for s, h in zip(spatial, hw)]
    return max(ratios) <= 1.3 * min(ratios) + 1e-9 and all(abs(h / max(ratios) - s) <= 0.15 * s + 1.5
                                                              for s, h in zip(spatial, hw))


def _channels_last_evidence(module, c_last: int, c_first: int) -> bool | None:
    """From the layer's own modules: True for channels-last (a LayerNorm/Linear over the last dim), False for
    channels-first (a convolution / batch-norm giving dim 1), None when nothing says."""
    if not isinstance(module, nn.Module):
        return None
    last = first = False
    for m in module.modules():
        if isinstance(m, nn.LayerNorm) and tuple(m.normalized_shape) == (c_last,) and type(m) is nn.LayerNorm:
            last = True
        elif isinstance(m, nn.Linear) and m.out_features == c_last:
            last = True
        elif isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and getattr(m, "out_channels", getattr(m, "num_features", 0)) \
                == c_first:
            first = True
    return None if last == first else last


def read_grid(model, x: torch.Tensor, acts_shape: tuple, layer=None, layer_name: str | None = None,
              reshape=None, input_layout=None) -> GridView:
    """How to read a layer output of shape ``acts_shape`` as ``[N, C, *grid]`` (see the module docstring)."""
    acts_shape = tuple(acts_shape)
    where = f"layer {layer_name!r}" if layer_name else "the layer"
    if reshape is not None:
        return _given(model, x, acts_shape, reshape, where, input_layout)
    img = image_input(x, input_layout)
    integer = not x.is_floating_point() and x.dtype != torch.bool
    if integer and x.dim() == 2 and len(acts_shape) == 3 and acts_shape[1] == x.shape[1]:
        return GridView("tokens", (acts_shape[1],), 0, "one vector per token position of the id input")
    if img.dim() != 4:
        return GridView("channels_first", tuple(acts_shape[2:]))
    hw = tuple(img.shape[2:])
    if len(acts_shape) == 3:
        view = _token_grid(model, acts_shape[1], hw)
        if view is None:
            raise ValueError(f"{where} gives {acts_shape} for {tuple(img.shape)} images: a token layer [N, tokens, "
                             "dim] whose patch grid attrkit cannot read (no patch embedding — a Conv2d with stride "
                             "= kernel — or config.patch_size matching the token count). Pass reshape={'prefix': "
                             "<tokens before the grid>, 'grid': (h, w)} or a callable returning [N, C, h, w]")
        return view
    if len(acts_shape) != 4:
        return GridView("channels_first", tuple(acts_shape[2:]))
    cf, cl = _fits(acts_shape[2:], hw), _fits(acts_shape[1:3], hw)
    if cl and not cf:
        return GridView("channels_last", tuple(acts_shape[1:3]), source="only this reading fits the input's size")
    if cl and cf:
        ev = _channels_last_evidence(layer, acts_shape[-1], acts_shape[1])
        if ev is None:
            ev = _channels_last_evidence(model, acts_shape[-1], acts_shape[1])
        if ev is None:
            import warnings
            warnings.warn(f"{where} gives {acts_shape}, which reads as channels-first or channels-last for "
                          f"{hw[0]}x{hw[1]} inputs; attrkit reads it as channels-first [N, C, H, W]. Pass "
                          "reshape='channels_last' if the channels are last", stacklevel=4)
        elif ev:
            return GridView("channels_last", tuple(acts_shape[1:3]), source="the layer's LayerNorm/Linear act on "
                                                                             "the last dimension")
    return GridView("channels_first", tuple(acts_shape[2:]))


def _given(model, x, acts_shape, reshape, where, input_layout) -> GridView:
    if callable(reshape):
        return GridView("callable", fn=reshape, source="reshape= callable")
    if isinstance(reshape, dict):
        bad = set(reshape) - {"prefix", "grid"}
        if bad or "grid" not in reshape:
            raise ValueError("reshape= as a dict takes 'grid' (the patch grid, e.g. (14, 14)) and optionally "
                             f"'prefix' (tokens before it); got keys {sorted(reshape)}")
        grid, prefix = tuple(int(g) for g in reshape["grid"]), int(reshape.get("prefix", 0))
        if len(acts_shape) != 3 or prefix < 0 or prefix + _prod(grid) > acts_shape[1]:
            raise ValueError(f"reshape={reshape} does not fit {where}'s output {acts_shape} ([N, tokens, dim] with "
                             "tokens >= prefix + grid cells)")
        return GridView("tokens", grid, prefix, "reshape= given")
    if reshape not in LAYOUTS:
        raise ValueError(f"reshape= must be one of {LAYOUTS}, a dict {{'prefix': p, 'grid': (h, w)}} or a callable; "
                         f"got {reshape!r}")
    if reshape == "channels_first":
        return GridView("channels_first", tuple(acts_shape[2:]))
    if reshape == "channels_last":
        if len(acts_shape) < 3:
            raise ValueError(f"reshape='channels_last' needs a layer output [N, *spatial, C]; {where} gives {acts_shape}")
        return GridView("channels_last", tuple(acts_shape[1:-1]), source="reshape= given")
    view = read_grid(model, x, acts_shape, None, None, None, input_layout) if len(acts_shape) == 3 else None
    if view is None or view.layout != "tokens":
        raise ValueError(f"reshape='tokens' needs a token layer [N, tokens, dim] whose grid attrkit can read; "
                         f"{where} gives {acts_shape}. Pass reshape={{'prefix': p, 'grid': (h, w)}}")
    return view


def layer_values_grid(problem, result) -> None:
    """Layer values of a token or channels-last layer: ``result.info["token_grid"]`` (what ``heatmap()`` reads to
    draw them on the patch grid); an image model's 3-D layer that reads as no grid gets a note instead."""
    v = result.values
    if not isinstance(v, torch.Tensor) or v.dim() < 3 or "token_grid" in result.info:
        return
    try:
        view = read_grid(problem.model, problem.inputs, tuple(v.shape), problem.layer, problem.layer_name,
                         input_layout=problem.layout)
    except ValueError as e:
        result.info["layer_grid"] = f"not drawn as a map: {e}"
        return
    if view.layout in ("tokens", "channels_last"):
        result.info["token_grid"] = {"layout": view.layout, "prefix": view.prefix, "grid": tuple(view.grid),
                                     "how": view.describe()}
