"""Canonizers: rewrite a model into an equivalent one whose layers relevance rules handle well.

``MergeBatchNorm`` folds an eval-mode BatchNorm into the Linear/Conv layer before it (Zennit's canonizer,
Montavon et al. 2019): ``BN(W a + b) = (s W) a + s (b - mu) + beta`` with ``s = gamma / sqrt(var + eps)``.
On the traced graph (``canonize(binding)``) it folds every BatchNorm call — module or ``F.batch_norm`` (timm's
``BatchNormAct2d``) — whose input is the output of a Linear/Conv call used by nothing else; a BatchNorm that
follows anything else (a concatenation, a pooling, the input) stays an affine layer of its own (``site.kind ==
"batch_norm"``), to which LRP gives the dense-layer rule. It never touches parameters: the layer's site returns
``s * out + (beta - s mu)`` and the BatchNorm's site returns its input, and rules read the merged weight and bias
through :func:`~attrkit.propagation.rules.layer_params`. ``attach(model, binding)`` does the same with hooks for models torch.fx cannot trace
(pairs in ``nn.Sequential`` containers only). The model's function is unchanged (up to rounding) during the call
and exactly unchanged after it. The protocol is :class:`Canonizer`.
"""
from __future__ import annotations

import abc

import torch
from torch import nn

__all__ = ["Canonizer", "MergeBatchNorm", "find_linear_batchnorm_pairs"]

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
        from ..core.trace import traced
        graph = traced(model).graph                 # the call's one trace (core.trace)
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


def _bn_affine(site, args) -> tuple | None:
    """(scale, shift) of an eval-mode BatchNorm call, or None (training mode, no running statistics)."""
    bn = site.module
    if bn is not None:
        if bn.training or bn.running_mean is None or bn.running_var is None:
            return None
        return MergeBatchNorm._affine(bn)
    return None


def _fn_bn_affine(binding, site) -> tuple | None:
    """(scale, shift) of an ``F.batch_norm(x, mean, var, weight, bias, training, momentum, eps)`` call whose
    statistics and parameters are attributes of the model (get_attr nodes)."""
    node = site.node
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    vals = dict(zip(names, node.args))
    vals.update(node.kwargs)

    def fetch(v):
        if v is None or not hasattr(v, "op"):
            return v
        if v.op != "get_attr":
            raise LookupError
        obj = binding.model
        for part in v.target.split("."):
            obj = getattr(obj, part)
        return obj

    try:
        mean, var = fetch(vals.get("running_mean")), fetch(vals.get("running_var"))
        w, b = fetch(vals.get("weight")), fetch(vals.get("bias"))
    except (LookupError, AttributeError):
        return None
    if vals.get("training") is not False or mean is None or var is None:
        return None
    eps = float(vals.get("eps", 1e-5))
    var, mean = var.detach(), mean.detach()
    scale = (w.detach() if w is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
    return scale, (b.detach() if b is not None else torch.zeros_like(mean)) - mean * scale


def _value_users(node) -> list:
    """Users of a node's value (shape, ndim, dtype reads such as timm's checks do not count)."""
    return [u for u in node.users if not (u.op == "call_function" and u.target is getattr)
            and not (u.op == "call_method" and u.target in ("size", "dim"))]


class Canonizer(abc.ABC):
    """The canonizer protocol, exactly as :class:`~attrkit.propagation.composites.Composite` calls it.

    A canonizer rewrites the bound model into an equivalent one the rules handle better, for one call, before the
    rules are chosen. It never changes parameters; everything it does is undone when the call ends.

    - ``canonize(binding)``: the model was traced (``binding.order``: call sites in execution order;
      ``binding.producer(site, i)``: the site that computed argument ``i``; ``binding.model``). Set
      ``site.post = (scale, shift)`` to apply a per-channel affine map to a Linear/Conv site's output (rules then
      read the merged weight and bias through ``layer_params(site)``) and ``site.skip = True`` to make a call return
      its first argument.
    - ``attach(model, binding) -> [handles]``: torch.fx cannot trace the model; rules are module hooks and
      ``binding.order`` holds one site per leaf module called (``binding.calls``: calls per module). Register
      forward hooks, mark the sites as above, return the hook handles (all removed on exit). The default refuses.
    - ``merged`` / ``unmerged``: names filled by either call, reported as ``info["canonized"]`` and
      ``info["batchnorm_layers"]``.
    """
    merged: tuple | list = ()
    unmerged: tuple | list = ()

    @abc.abstractmethod
    def canonize(self, binding) -> None:
        """Rewrite the traced ``binding`` (see the class docstring); a subclass must define it."""

    def attach(self, model: nn.Module, binding) -> list:
        raise ValueError(f"canonizer {type(self).__name__} works on the traced graph only (it has no attach("
                         "model, binding) for module hooks), and torch.fx cannot trace this model; make the model "
                         "traceable or leave the canonizer out")


class MergeBatchNorm(Canonizer):
    """Folds each BatchNorm into the Linear/Conv layer that alone feeds it (see the module docstring)."""

    def __init__(self):
        self.pairs: list = []        # (layer site, BatchNorm site) folded in the last call
        self.merged: list = []       # "batchnorm -> layer" names
        self.unmerged: list = []     # names of BatchNorm calls that stay layers of their own

    def canonize(self, binding) -> None:
        """Fold each BatchNorm call into the Linear/Conv call that alone feeds it (graph binding)."""
        self.pairs, self.unmerged = [], []
        uses: dict = {}
        for s in binding.order:
            if s.module is not None:
                uses[s.module] = uses.get(s.module, 0) + 1
        for site in binding.order:
            if site.kind != "batch_norm" or site.tapped:
                continue
            affine = _bn_affine(site, ()) if site.module is not None else _fn_bn_affine(binding, site)
            src = binding.producer(site)
            ok = (affine is not None and src is not None and src.kind in ("linear", "conv") and src.post is None
                  and len(_value_users(src.node)) == 1 and uses.get(src.module) == 1
                  and src.module.weight.shape[0] == affine[0].numel())
            if ok:
                src.post, site.skip = affine, True
                self.pairs.append((src, site))
            else:
                self.unmerged.append(site.name)
        self.merged = [f"{bn.name} -> {layer.name}" for layer, bn in self.pairs]

    def attach(self, model: nn.Module, binding) -> list:
        """Module hooks (untraceable models): fold the pairs found in ``nn.Sequential`` containers (or the fx graph
        of a submodule); refuse a pair whose layer is also called without its BatchNorm."""
        pairs = find_linear_batchnorm_pairs(model)
        names = {m: n for n, m in model.named_modules()}
        paired = {bn for _, bn in pairs}
        self.unmerged = [names[m] for m in model.modules() if isinstance(m, _BN) and m not in paired]
        sites = {s.module: s for s in binding.order}
        if any(binding.calls[layer] != binding.calls[bn] for layer, bn in pairs):
            raise ValueError("cannot fold a BatchNorm into the layer before it: the layer is also used without it; "
                             "pass canonize=False")
        self.pairs, handles = [], []
        for layer, bn in pairs:
            scale, shift = self._affine(bn)
            src, dst = sites.get(layer), sites.get(bn)
            if src is not None:
                src.post = (scale, shift)
            if dst is not None:
                dst.skip = True
            self.pairs.append((layer, bn))
            handles.append(layer.register_forward_hook(self._layer_hook(scale, shift)))
            handles.append(bn.register_forward_hook(lambda m, args, out: args[0]))
        show = lambda m: sites[m].name if m in sites else names[m]
        self.merged = [f"{show(bn)} -> {show(layer)}" for layer, bn in self.pairs]
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
