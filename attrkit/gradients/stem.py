"""The affine first layer of a path integral: one input-gradient backward per sample instead of per point.

When the input reaches the network only through one affine layer ``L`` (a ``Conv1d/2d/3d`` or ``Linear``, the
stem of most image networks), ``grad_x f(p) = J_L^T grad_h f(h)`` at ``h = L(p)`` with ``J_L`` the same matrix
at every point. A weighted sum of gradients without per-point multipliers (Integrated Gradients' quadrature)
therefore factors: ``sum_k w_k grad_x f(p_k) = J_L^T (sum_k w_k grad_h f(L(p_k)))``. The engine takes gradients
at ``L``'s output (its backward stops there) and :func:`pull_back` applies ``J_L^T`` once per sample, in float64.
The forward pass is unchanged (the model still sees every path point). On ``bench_cnn`` the stem's input-gradient
backward (32 -> 3 channels at 64x64, a poorly vectorised convolution) was about a fifth of IG's time.

:func:`affine_stem` finds ``L`` on one probe row and refuses (returns None) unless all of these hold: the model
is an eager ``nn.Module``; the first module called on the input tensor itself is one of those layer types with
their own ``forward`` and no hooks of the user's; it is called once; and the input reaches the target through
nothing else (the gradient at the input with ``L``'s output held fixed is unused).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modules import LayerTap, is_scripted

AFFINE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _plain_affine(m: nn.Module) -> bool:
    """One of :data:`AFFINE` computing its own ``forward`` (a subclass may override it with anything)."""
    for base in AFFINE:
        if isinstance(m, base):
            if type(m).forward is not base.forward:
                return False
            return base is nn.Linear or type(m)._conv_forward is base._conv_forward
    return False


def _other_hooks(m: nn.Module) -> bool:
    """Hooks that may change what the stem computes or receives: forward pre-hooks, backward hooks (skipped
    when gradients stop at its output) and global forward hooks. Its own forward hooks are allowed when they
    only observe (checked on every call by :class:`StemTap`), as a FLOP counter does."""
    return any(len(getattr(m, a, None) or {}) for a in ("_forward_pre_hooks", "_backward_hooks",
                                                         "_backward_pre_hooks")) or \
        bool(nn.modules.module._global_forward_hooks) or bool(nn.modules.module._global_forward_pre_hooks) or \
        bool(nn.modules.module._global_backward_hooks)


class StemTap(LayerTap):
    """Tap at the stem's output that makes it a leaf: the backward stops there and the path points need no
    gradient (the stem's input-gradient pass is never recorded). The stem's own forward hooks run before this
    one; they must leave its output as it was (same tensor, not modified in place) or the call is refused."""

    leaf = True

    def __init__(self, module: nn.Module, name: str = "layer", copy: bool = False):
        super().__init__(module, name)
        self.copy = copy

    def __enter__(self) -> "StemTap":
        self._raw = None
        self._first = self.module.register_forward_hook(self._capture, prepend=True)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        self._first.remove()
        super().__exit__(*exc)

    def _capture(self, module, args, out):
        self._raw = (out, out._version)

    def _hook(self, module, args, out):
        self.calls += 1
        if self.calls > 1:
            raise ValueError(f"layer {self.name!r} is called more than once in one forward pass")
        if self._raw is None or out is not self._raw[0] or out._version != self._raw[1]:
            raise ValueError(f"a forward hook on {self.name!r} changed its output: attrkit cannot take input "
                             "gradients through the affine first layer's output; remove the hook")
        self.output = out.detach().requires_grad_(True)
        # an in-place operation right after the stem (ReLU(inplace=True)) needs a copy: autograd refuses it on a leaf
        return self.output.clone() if self.copy else self.output


class Stem(NamedTuple):
    name: str
    module: nn.Module
    shape: tuple               # the module's output for one row
    copy: bool                 # hand the rest of the model a copy of the stem's output (in-place ops after it)


def affine_stem(problem) -> Stem | None:
    """The affine layer through which alone the input reaches the output, or None."""
    model, x = problem.model, problem.inputs
    if problem.layer is not None or not isinstance(model, nn.Module) or is_scripted(model) \
            or not x.is_floating_point() or x.shape[0] < 1:
        return None
    probe = x[:1].detach().clone().requires_grad_(True)
    first: list = []

    order: list = []

    def pre(m, args):
        order.append(m)
        if not first and args and args[0] is probe:
            first.append(m)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(pre) for m in leaves]
    try:
        with torch.no_grad():
            problem.forward(probe, torch.zeros(1, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    if not first or not _plain_affine(first[0]) or _other_hooks(first[0]) or order[-1] is first[0]:
        return None          # (a network that is the affine layer alone gains nothing)
    if not isinstance(first[0], nn.Linear) and first[0].padding_mode != "zeros":
        return None
    stem = first[0]
    name = next(n for n, m in model.named_modules() if m is stem)
    if type(model).__name__ == "ModelAdapter" and name.startswith("model."):
        name = name[len("model."):]          # the user's name for it
    for copy in (False, True):       # without a copy of its output where the model allows it
        shape = _only_through(problem, stem, name, probe, copy)
        if shape is not None:
            return Stem(name, stem, shape, copy)
    return None


def _only_through(problem, stem: nn.Module, name: str, probe: torch.Tensor, copy: bool) -> tuple | None:
    """The stem's output shape (one row) if ``probe`` reaches the target only through ``stem``, called once,
    with hooks that leave its output alone; else None."""
    calls, fixed = [0], {}

    def hold(m, args, out):           # L's output held fixed: gradients reach the probe only around L
        calls[0] += 1
        fixed.setdefault("h", out.detach().requires_grad_(True))    # a leaf, as StemTap makes it
        return fixed["h"].clone() if copy else fixed["h"]

    tap = StemTap(stem, name, copy)   # (refuses hooks of the user's that change L's output)
    tap.__enter__()
    handle = stem.register_forward_hook(hold)
    rows = torch.zeros(1, dtype=torch.long)
    try:
        with torch.enable_grad():
            score = problem.target(problem.forward(probe, rows), rows)
            around = None
            if score.requires_grad:
                (around,) = torch.autograd.grad(score.sum(), probe, allow_unused=True)
    except (RuntimeError, ValueError, TypeError):
        return None
    finally:
        handle.remove()
        tap.__exit__(None, None, None)
    if calls[0] != 1 or around is not None:
        return None
    return tuple(fixed["h"].shape[1:])


def pull_back(stem: nn.Module, grad_h: torch.Tensor, input_shape: tuple) -> torch.Tensor:
    """``J_L^T grad_h`` for each row of ``grad_h`` (float64): the input gradient of the affine ``stem``, through
    its functional form (no module hooks fire: a FLOP counter sees only the path's own passes)."""
    weight = stem.weight.detach().to(torch.float64)
    g = grad_h.to(torch.float64)
    if isinstance(stem, nn.Linear):
        return g @ weight
    conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[next(t for t in AFFINE if isinstance(stem, t))]
    z = torch.zeros((g.shape[0],) + tuple(input_shape), dtype=torch.float64, device=g.device, requires_grad=True)
    with torch.enable_grad():
        out = conv(z, weight, None, stem.stride, stem.padding, stem.dilation, stem.groups)
        (gz,) = torch.autograd.grad(out, z, g)
    return gz
