"""Class activation maps at a convolutional layer: the base and the gradient-based family.

The base owns the layer (default: the model's last convolution), its activations ``A [N, K, *s]``, the target's
gradients ``G`` at the layer (from the gradient engine), and the cam_result (optional ReLU, signed maps kept in
``info["raw"]``). Each method is one function of ``(A, G)`` returning a signed map ``[N, 1, *s]``:

- Grad-CAM (Selvaraju et al. 2017): ``sum_k mean(G_k) A_k``;
- Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, exponential closed form as in pytorch-grad-cam):
  ``w_k = sum relu(G_k) * G_k^2 / (2 G_k^2 + sum(A_k) G_k^3)``;
- HiResCAM (Draelos & Carin 2020): ``sum_k G_k * A_k``;
- LayerCAM (Jiang et al. 2021): ``sum_k relu(G_k) * A_k``;
- XGrad-CAM (Fu et al. 2020): ``w_k = sum G_k A_k / sum A_k``;
- Eigen-CAM (Muhammad & Yeasin 2020): projection on the first principal component of the centred activations
  (class-agnostic; sign chosen so the larger magnitude is positive);
- Guided Grad-CAM: Grad-CAM upsampled to the input times Guided Backpropagation.

Maps stay at the layer's resolution; ``Attribution.heatmap()`` resizes them to the input. Token layers of vision
transformers ``[N, 1 + h*w, D]`` and channels-last maps ``[N, H, W, C]`` are read as ``[N, C, h, w]`` (class and
register tokens dropped; :mod:`attrkit.core.token_grid`; ``reshape=`` overrides). The automatic layer is the output
of the model's last stage (:mod:`attrkit.core.auto_layer`; ``info["layer_choice"]`` says which and why).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..core.auto_layer import LayerChoice, choose_layer
from ..core.modules import require_hooks
from ..core.problem import Problem, Result
from ..core.token_grid import GridView, read_grid
from ..gradients.engine import gradient_sum
from ..registry import register
from ..propagation.guided import relu_rule_gradient
from ..propagation.rules import GuidedReLU

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def last_conv(model) -> tuple[str, nn.Module]:
    """The default CAM layer: the last convolution in ``model.named_modules()``, or the ReLU that follows it in
    the same ``nn.Sequential`` (its rectified feature maps, as in Grad-CAM; e.g. VGG16's ``features.29``)."""
    if not isinstance(model, nn.Module):
        raise TypeError("CAM methods need a torch.nn.Module model (to find its convolutional layer)")
    require_hooks(model, "a CAM method")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONVS)]
    if not convs:
        raise ValueError("the model has no Conv1d/Conv2d/Conv3d layer for a CAM method; pass layer= with a layer "
                         "whose output is [N, channels, *spatial]")
    name, conv = convs[-1]
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential):
        kids = list(parent.named_children())
        pos = [k for k, _ in kids].index(child)
        if pos + 1 < len(kids) and isinstance(kids[pos + 1][1], nn.ReLU):
            nxt = kids[pos + 1][0]
            return (f"{parent_name}.{nxt}" if parent_name else nxt), kids[pos + 1][1]
    return name, conv


def default_cam_layer(model, x: torch.Tensor, forward=None, input_layout=None) -> LayerChoice:
    """The automatic CAM layer: the output of the model's last stage (see :mod:`attrkit.core.auto_layer`)."""
    return choose_layer(model, x, forward, "a CAM method", input_layout)


def layer_maps(problem: Problem, reshape=None) -> tuple[torch.Tensor, GridView, torch.Tensor]:
    """``(raw, view, maps)``: the layer's output, how it reads as a map, and the map ``[N, C, *grid]``."""
    raw = problem.activation(problem.inputs)
    if raw.dim() < 3:
        raise ValueError(f"CAM methods need a layer output [N, channels, *spatial]; layer {problem.layer_name!r} "
                         f"gives {tuple(raw.shape)} — choose a convolutional layer or a token block")
    view = read_grid(problem.model, problem.inputs, tuple(raw.shape), problem.layer, problem.layer_name, reshape,
                     problem.layout)
    return raw, view, view.maps(raw)


def layer_activations(problem: Problem, reshape=None) -> torch.Tensor:
    return layer_maps(problem, reshape)[2]


def grid_info(view: GridView) -> dict:
    return {} if view.layout == "channels_first" else {"layer_grid": view.describe()}


def layer_gradients(problem: Problem, acts: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Gradient of the target at the layer output, from the gradient engine."""
    x = problem.inputs
    ones = torch.ones(1, dtype=torch.float64)
    plan = lambda rows, ks: (x[rows], ones.expand(len(rows)), None)
    return gradient_sum(problem, torch.arange(problem.n), 1, plan, tuple(acts.shape[1:]), grad_at="layer",
                        desc="layer gradient")


def _spatial(t: torch.Tensor) -> tuple:
    return tuple(range(2, t.dim()))


def _expand(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return w.view(w.shape + (1,) * (like.dim() - w.dim()))


def weighted(w: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k A_k`` as ``[N, 1, *s]`` for channel weights ``w [N, K]``."""
    return (_expand(w, acts) * acts).sum(1, keepdim=True)


def cam_result(maps: torch.Tensor, relu: bool, info: dict) -> Result:
    info = dict(info)
    if relu:
        info["raw"] = maps
        maps = maps.clamp(min=0)
    info["relu"] = bool(relu)
    return Result(maps, info)


def gradient_cam(problem: Problem, combine, relu: bool, reshape=None) -> Result:
    raw, view, acts = layer_maps(problem, reshape)
    grads, n = layer_gradients(problem, raw)
    return cam_result(combine(acts, view.maps(grads)), relu, {"n_evals": n + problem.n, **grid_info(view)})


# -------------------------------------------------------------------------------- combinations
def grad_cam_map(acts, grads):
    return weighted(grads.mean(dim=_spatial(grads)), acts)


def grad_cam_pp_map(acts, grads, eps: float = 1e-6):
    g2 = grads * grads
    g3 = g2 * grads
    s = _expand(acts.sum(dim=_spatial(acts)), acts)
    aij = g2 / (2 * g2 + s * g3 + eps)
    aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
    return weighted((grads.clamp(min=0) * aij).sum(dim=_spatial(grads)), acts)


def hires_cam_map(acts, grads):
    return (grads * acts).sum(1, keepdim=True)


def layer_cam_map(acts, grads):
    return (grads.clamp(min=0) * acts).sum(1, keepdim=True)


def xgrad_cam_map(acts, grads, eps: float = 1e-7):
    s = _expand(acts.sum(dim=_spatial(acts)), acts)
    return weighted((grads * acts / (s + eps)).sum(dim=_spatial(acts)), acts)


def eigen_map(acts: torch.Tensor) -> torch.Tensor:
    """Projection of each position's channel vector on the first principal component (positions centred)."""
    n, k = acts.shape[:2]
    x = acts.reshape(n, k, -1).transpose(1, 2).double()
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = (x @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)
    flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()
    proj = torch.where(flip.unsqueeze(1), -proj, proj)
    return proj.reshape((n, 1) + tuple(acts.shape[2:])).to(acts.dtype)


def _cam(name: str, combine, summary: str, reference: str):
    def method(problem: Problem, relu: bool = True, reshape=None) -> Result:
        return gradient_cam(problem, combine, relu, reshape)
    method.__name__ = name
    method.__doc__ = f"{summary} ({reference}). ``relu=False`` keeps the signed map; ``reshape=`` reads the " \
                     "layer's layout (see attrkit.core.token_grid). Output ``[N, 1, *grid]``."
    register(name, family="cam", summary=summary, layer="required", reference=reference,
             default_layer=default_cam_layer)(method)
    return method


grad_cam = _cam("grad_cam", grad_cam_map, "channel weights = spatial mean of the layer gradient",
                "Selvaraju et al. 2017")
grad_cam_pp = _cam("grad_cam_pp", grad_cam_pp_map, "Grad-CAM++: positive gradients weighted by alpha_kij",
                   "Chattopadhay et al. 2018")
hires_cam = _cam("hires_cam", hires_cam_map, "HiResCAM: elementwise gradient x activation, summed over channels",
                 "Draelos & Carin 2020")
layer_cam = _cam("layer_cam", layer_cam_map, "LayerCAM: elementwise relu(gradient) x activation",
                 "Jiang et al. 2021")
xgrad_cam = _cam("xgrad_cam", xgrad_cam_map, "XGrad-CAM: activation-normalised gradient weights",
                 "Fu et al. 2020")


@register("eigen_cam", family="cam", summary="first principal component of the layer activations (class-agnostic)",
          layer="required", gradients=False, reference="Muhammad & Yeasin 2020", default_layer=default_cam_layer)
def eigen_cam(problem: Problem, relu: bool = True, reshape=None) -> Result:
    """Eigen-CAM: the activations projected on their first principal component. Ignores the target."""
    _, view, acts = layer_maps(problem, reshape)
    return cam_result(eigen_map(acts), relu, {"n_evals": problem.n, "class_agnostic": True, **grid_info(view)})



@register("guided_grad_cam", family="cam", summary="Grad-CAM upsampled to the input times Guided Backpropagation",
          layer="required", reference="Selvaraju et al. 2017", default_layer=default_cam_layer)
def guided_grad_cam(problem: Problem, interpolate: str = "bilinear", reshape=None) -> Result:
    """``guided_backprop(x) * upsample(relu(grad_cam))`` at input resolution; ``interpolate``: "bilinear"
    (linear/trilinear for 1-D/3-D maps, as in the paper) or "nearest" (Captum's default)."""
    if interpolate not in ("bilinear", "nearest"):
        raise ValueError(f"interpolate must be 'bilinear' or 'nearest', got {interpolate!r}")
    x = problem.inputs
    cam = gradient_cam(problem, grad_cam_map, relu=True, reshape=reshape)
    layout = problem.layout
    shapes = [tuple(x.shape)] if layout is None else [(x.shape[0],) + s for s in layout.shapes]
    fits = [len(sh) == cam.values.dim() and len(sh) > 2 for sh in shapes]
    if not any(fits):
        raise ValueError("guided_grad_cam needs inputs with the same number of spatial dimensions as the layer")

    def up(spatial):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)] if interpolate == "bilinear" else "nearest"
        return F.interpolate(cam.values, size=spatial, mode=mode,
                             **({} if mode == "nearest" else {"align_corners": False}))

    grad, info = relu_rule_gradient(replace(problem, layer=None, layer_name=None), GuidedReLU(), "guided_grad_cam")
    info["n_evals"] += cam.info["n_evals"]
    info["grad_cam"] = cam.values
    if layout is None:
        return Result(grad * up(tuple(x.shape[2:])), info)
    # several inputs: the map multiplies the inputs of the layer's geometry; the others get no map (zeros, as
    # Captum returns None for them), and info says which
    parts = [g * up(tuple(g.shape[2:])) if ok else torch.zeros_like(g) for g, ok in zip(layout.unpack(grad), fits)]
    info["inputs_without_map"] = [nm for nm, ok in zip(layout.names, fits) if not ok]
    if info["inputs_without_map"]:
        import warnings
        warnings.warn(f"guided_grad_cam: inputs {info['inputs_without_map']} do not have the layer's spatial "
                      "dimensions, so no Grad-CAM map can be laid over them; their values are zeros", stacklevel=3)
    return Result(layout.pack(parts), info)
