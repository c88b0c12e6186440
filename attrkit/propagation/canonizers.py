"""Canonizers: rewrite a model into an equivalent one whose layers relevance rules handle well.

``MergeBatchNorm`` folds an eval-mode BatchNorm into the Linear/Conv layer before it (Zennit's canonizer,
Montavon et al. 2019): ``BN(W a + b) = (s W) a + s (b - mu) + beta`` with ``s = gamma / sqrt(var + eps)``.
It never touches parameters: while attached, a hook makes the layer return ``s * out + (beta - s mu)`` and the
BatchNorm return its input, and rules read the merged weight and bias from ``params``. The model's function is
unchanged (up to rounding) during the call and exactly unchanged after it.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MergeBatchNorm", "find_linear_batchnorm_pairs"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = nn.modules.batchnorm._BatchNorm


def _mergeable(layer: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(layer, _LAYERS) and isinstance(bn, _BN) and not bn.training
            and bn.running_mean is not None and bn.running_var is not None
            and layer.weight.shape[0] == bn.num_features)


def find_linear_batchnorm_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(layer, batchnorm) pairs where the BatchNorm's only input is the layer's output.

    Found in ``nn.Sequential`` containers (consecutive children) and, for other models, in the torch.fx graph
    (when the model can be traced) where the layer's output has the BatchNorm as its single user.
    """
    pairs, seen = [], set()
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq.children())
            for a, b in zip(kids, kids[1:]):
                if _mergeable(a, b) and b not in seen:
                    pairs.append((a, b))
                    seen.add(b)
    todo = [m for m in model.modules() if isinstance(m, _BN) and m not in seen]
    if todo:
        pairs += _fx_pairs(model, seen)
    return pairs


def _fx_pairs(model: nn.Module, seen: set) -> list:
    try:
        import torch.fx
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:       # dynamic control flow etc.: leave those BatchNorms unmerged
        return []
    mods = dict(model.named_modules())
    uses = {}
    for node in graph.nodes:
        if node.op == "call_module":
            uses[node.target] = uses.get(node.target, 0) + 1
    out = []
    for node in graph.nodes:
        if node.op != "call_module" or not node.args or not hasattr(node.args[0], "op"):
            continue
        bn, src = mods.get(node.target), node.args[0]
        if bn in seen or src.op != "call_module" or len(src.users) != 1:
            continue
        layer = mods.get(src.target)
        if _mergeable(layer, bn) and uses[src.target] == 1 and uses[node.target] == 1:
            out.append((layer, bn))
            seen.add(bn)
    return out


class MergeBatchNorm:
    """Canonizer for :class:`~attrkit.propagation.composites.Composite` (see module docstring)."""

    def __init__(self):
        self.params: dict = {}
        self.pairs: list = []

    def attach(self, model: nn.Module) -> list:
        self.pairs = find_linear_batchnorm_pairs(model)
        handles = []
        for layer, bn in self.pairs:
            scale, shift = self._affine(bn)
            w = layer.weight.detach()
            b = layer.bias.detach() if layer.bias is not None else torch.zeros_like(scale)
            self.params[layer] = (w * scale.view((-1,) + (1,) * (w.dim() - 1)), b * scale + shift)
            handles.append(layer.register_forward_hook(self._layer_hook(scale, shift)))
            handles.append(bn.register_forward_hook(lambda m, args, out: args[0]))
        return handles

    @staticmethod
    def _affine(bn) -> tuple[torch.Tensor, torch.Tensor]:
        var, mean = bn.running_var.detach(), bn.running_mean.detach()
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + bn.eps)
        return scale, beta - mean * scale

    @staticmethod
    def _layer_hook(scale, shift):
        def hook(module, args, out):
            view = (1, -1) + (1,) * (out.dim() - 2)
            return out * scale.view(view) + shift.view(view)
        return hook

    def verify(self, trace) -> None:
        """Refuse a merge when the layer and its BatchNorm are not called equally often."""
        for layer, bn in self.pairs:
            if trace.calls[layer] != trace.calls[bn]:
                raise ValueError("cannot fold a BatchNorm into the layer before it: the layer is also used "
                                 "without it; pass canonize=False")

    def merged(self, names: dict) -> list[str]:
        return [f"{names.get(bn, '?')} -> {names.get(layer, '?')}" for layer, bn in self.pairs]
