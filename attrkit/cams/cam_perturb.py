"""Gradient-free CAMs: channel weights from batched forward passes.

- Score-CAM (Wang et al. 2020): each channel, upsampled to the input (bilinear, align_corners=True as the
  reference implementation) and min-max normalised, masks the input; its weight is the target score of the
  masked input, softmax-normalised over channels (``softmax=False``: score minus the score of the all-masked
  input, the paper's "increase of confidence").
- Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y`` where ``y_k`` is the target score with
  channel ``k`` of the layer set to zero. Only the part of the model after the layer is evaluated when it can
  be split off (torch.fx); otherwise full forward passes with the layer's output replaced (``info["split"]``).

All (sample, channel) rows run in chunks of ``problem.chunk(grad=False)``; channels whose map is constant
(mask 0; ablation of an all-zero channel changes nothing) are evaluated once per sample, or not at all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.problem import Problem, Result
from ..registry import register
from .cam import default_cam_layer, cam_result, grid_info, layer_maps, weighted
from ..core.split import split_at_layer


def _bar(problem: Problem, total: int, desc: str):
    from ..progress import bar
    return bar(total, desc, problem.progress)


def _layout(t: torch.Tensor) -> torch.Tensor:
    """Channels-last for image batches: oneDNN/cuDNN convolutions run faster on it (values equal to rounding)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _upsample(maps: torch.Tensor, size: tuple) -> torch.Tensor:
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps, size=size, mode=mode, align_corners=True)


def _masked(problem: Problem, xr: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Inputs times each map, upsampled to the input and min-max normalised; with several inputs every input
    with the layer's number of spatial dimensions is masked (the others, e.g. a table, are kept as they are)."""
    def mask(part):
        if part.dim() != maps.dim():
            return part
        m = _upsample(maps, tuple(part.shape[2:]))
        lo = m.flatten(1).amin(1).view((-1,) + (1,) * (m.dim() - 1))
        hi = m.flatten(1).amax(1).view((-1,) + (1,) * (m.dim() - 1))
        return part * ((m - lo) / (hi - lo + 1e-8))
    if problem.layout is None:
        return mask(xr)
    return problem.layout.pack([mask(p) for p in problem.layout.unpack(xr)])


@register("score_cam", family="cam", summary="channel weights from the scores of inputs masked by each channel",
          layer="required", gradients=False, reference="Wang et al. 2020", default_layer=default_cam_layer)
def score_cam(problem: Problem, softmax: bool = True, relu: bool = True, reshape=None) -> Result:
    """Score-CAM at the layer; batched masked forward passes (see module docstring)."""
    x = problem.inputs
    shapes = [x.shape] if problem.layout is None else [(x.shape[0],) + s for s in problem.layout.shapes]
    if all(len(sh) < 3 for sh in shapes):
        raise ValueError("score_cam masks the input with upsampled layer maps; it needs inputs [N, C, *spatial]")
    _, view, acts = layer_maps(problem, reshape)
    n, k = acts.shape[:2]
    if not any(len(sh) == acts.dim() for sh in shapes):
        raise ValueError(f"score_cam needs a layer with as many spatial dimensions as the input; layer gives "
                         f"{tuple(acts.shape)} for inputs {', '.join(str(tuple(sh)) for sh in shapes)}")
    flat = acts.reshape(n, k, -1)
    live = flat.amax(2) > flat.amin(2)                     # constant maps normalise to an all-zero mask
    pairs = live.nonzero()
    pairs_cpu = pairs.cpu()                          # targets read rows on the CPU: one copy, not one per chunk
    scores = torch.empty(n, k, dtype=torch.float64, device=x.device)
    step = problem.chunk(grad=False)
    need_zero = (~live).any(1) | torch.tensor(not softmax, device=live.device).expand(n)
    zero_rows = need_zero.nonzero().flatten()
    zero_cpu = zero_rows.cpu()
    bar = _bar(problem, len(pairs) + len(zero_rows), "score-cam")
    with torch.no_grad():
        zero_score = torch.zeros(n, dtype=torch.float64, device=x.device)
        for s in range(0, len(zero_rows), step):
            rows = zero_rows[s:s + step]
            zero_score[rows] = problem.target(problem.forward(_layout(x[rows] * 0), rows),
                                              zero_cpu[s:s + step]).double()
            bar.update(len(rows))
        scores[:] = zero_score.unsqueeze(1)
        for s in range(0, len(pairs), step):
            rows, ch = pairs[s:s + step, 0], pairs[s:s + step, 1]
            masked = _masked(problem, x[rows], acts[rows, ch].unsqueeze(1))
            scores[rows, ch] = problem.target(problem.forward(_layout(masked), rows), pairs_cpu[s:s + step, 0]).double()
            bar.update(len(rows))
    bar.close()
    w = torch.softmax(scores, dim=1) if softmax else scores - zero_score.unsqueeze(1)
    info = {"n_evals": problem.n + len(pairs) + len(zero_rows), "channel_weights": w.to(x.dtype),
            "constant_channels": int((~live).sum()), **grid_info(view)}
    return cam_result(weighted(w.to(acts.dtype), acts), relu, info)



@register("ablation_cam", family="cam", summary="channel weights = relative score drop when the channel is zeroed",
          layer="required", gradients=False, reference="Desai & Ramaswamy 2020", default_layer=default_cam_layer)
def ablation_cam(problem: Problem, relu: bool = True, reshape=None) -> Result:
    """Ablation-CAM at the layer; batched ablations, evaluating only the rest of the model when possible.
    At a token layer a channel is zeroed on the patch tokens (class/register tokens keep their values)."""
    x = problem.inputs
    raw, view, acts = layer_maps(problem, reshape)
    n, k = acts.shape[:2]
    rows_all = torch.arange(n)
    y = problem.target(problem.outputs, rows_all).double().to(x.device)
    with torch.no_grad():
        split = split_at_layer(problem, activation=raw)      # the part after the layer (or the replacing hook)
    live = acts.reshape(n, k, -1).ne(0).any(2)              # zeroing an all-zero channel changes nothing
    pairs = live.nonzero()
    pairs_cpu = pairs.cpu()                          # targets read rows on the CPU: one copy, not one per chunk
    ablated = y.unsqueeze(1).repeat(1, k)
    step = problem.chunk(grad=False)
    bar = _bar(problem, len(pairs), "ablation-cam")
    try:
        with torch.no_grad():
            for s in range(0, len(pairs), step):
                rows, ch = pairs[s:s + step, 0], pairs[s:s + step, 1]
                a = acts[rows].clone()
                a[torch.arange(len(rows), device=a.device), ch] = 0
                a = view.back(a, raw[rows])
                out = split.run(_layout(a) if split.head_only else a, rows)
                ablated[rows, ch] = problem.target(out, pairs_cpu[s:s + step, 0]).double()
                bar.update(len(rows))
    finally:
        bar.close()
    denom = torch.where(y >= 0, y.clamp(min=1e-12), y.clamp(max=-1e-12)).unsqueeze(1)   # y = 0: no blow-up
    w = (y.unsqueeze(1) - ablated) / denom
    info = {"n_evals": problem.n + len(pairs), "channel_weights": w.to(x.dtype),
            "split": "tail" if split.head_only else "full forward (layer output replaced)", **grid_info(view)}
    return cam_result(weighted(w.to(acts.dtype), acts), relu, info)
