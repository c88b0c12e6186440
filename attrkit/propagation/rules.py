"""Backward rules as forward hooks: the forward value is unchanged, the gradient implements the rule.

A rule is a small object whose ``forward(site, inputs, output, ctx)`` (``site``: one call of an operation, see
:mod:`attrkit.propagation.graph`; ``site.module`` the module or None) returns a tensor equal to ``output``
(bit for bit) whose gradient is the rule's modified backward pass. The trick (as in Zennit's gradient
formulation) is ``surrogate(value, g) = value.detach() + (g - g.detach())``: value of ``value``, gradient of ``g``.

Relevance rules use the *signal* convention: the backward pass carries ``s`` with relevance ``R = a * s`` for a
tensor ``a`` (the activation). Plain gradients through ReLU, max/average pooling, flatten and additions then
implement the pass / winner-take-all / proportional (Norm) rules of LRP, so those layers need no hook; an
unhooked Linear/Conv is LRP-0. Input-layer rules (flat, w^2, z-box) return relevance itself as the gradient.

References: Bach et al. 2015 (epsilon, alpha-beta), Montavon et al. 2017 (z+, z-box, w^2), Lapuschkin et al.
2019 (flat), Montavon et al. 2019 / Andeol et al. 2021 (gamma), Zeiler & Fergus 2014 (DeconvNet),
Springenberg et al. 2015 (Guided Backpropagation).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Rule", "surrogate", "stabilize", "GuidedReLU", "DeconvReLU", "Epsilon", "ZPlus", "AlphaBeta",
           "Gamma", "Flat", "WSquare", "ZBox", "Zero", "Pass", "layer_params", "NormIdentity", "Gate", "make_rule", "LRP_RULES",
           "INPUT_RULES"]


def surrogate(value: torch.Tensor, grad_of: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``value`` whose gradient is the gradient of ``grad_of``."""
    return value.detach() + (grad_of - grad_of.detach())


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with sign(0) = +1 (Zennit's stabilizer)."""
    return z + ((z == 0).to(z) + z.sign()) * eps


def layer_forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """The linear map of ``module`` (Linear or Conv1d/2d/3d) with other parameters."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        return module._conv_forward(x, weight, bias)
    raise TypeError(f"relevance rules apply to Linear and Conv layers, not {type(module).__name__}")


def layer_params(site) -> tuple:
    """The weight and bias of a Linear/Conv site, detached, with a BatchNorm a canonizer folded into it merged in
    (``site.post = (scale, shift)``: ``W' = scale W``, ``b' = scale b + shift``)."""
    module = site.module
    bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
    if site.post is None:
        return module.weight.detach(), bias
    scale, shift = site.post
    w = module.weight.detach()
    return w * scale.view((-1,) + (1,) * (w.dim() - 1)), (bias if bias is not None else torch.zeros_like(scale)) \
        * scale + shift


class Rule:
    """Base class. ``needs_grad``: the rule only acts when the forward pass records gradients."""
    name = "rule"
    needs_grad = True

    def forward(self, site, inputs, output, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        show = lambda v: f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(v)
        params = ", ".join(f"{k}={show(v)}" for k, v in vars(self).items() if not k.startswith("_")
                           and k != "refs")
        return f"{self.name}({params})"


# --------------------------------------------------------------------------------- ReLU rules
class GuidedReLU(Rule):
    """Guided Backpropagation: ``g_in = f'(z) * relu(g_out)`` at a rectifier ``f`` (for ReLU
    ``relu(g_out) * 1[z > 0]``, Springenberg et al. 2015)."""
    name = "guided_backprop"

    def forward(self, module, inputs, output, ctx):
        out = surrogate(output, output)        # a fresh tensor: the hook below sees only this use
        out.register_hook(lambda g: g.clamp(min=0))
        return out


class DeconvReLU(Rule):
    """DeconvNet: ``g_in = relu(g_out)`` at a rectifier, ignoring the forward pass (Zeiler & Fergus 2014)."""
    name = "deconvnet"

    def forward(self, module, inputs, output, ctx):
        out = surrogate(output, inputs[0])      # gradient passes as identity ...
        out.register_hook(lambda g: g.clamp(min=0))   # ... and is rectified
        return out


# --------------------------------------------------------------------------------- LRP rules
class _LinearRule(Rule):
    """Rules on Linear/Conv layers, computed from the (canonized) weight and bias: :func:`layer_params`."""

    def forward(self, site, inputs, output, ctx):
        weight, bias = layer_params(site)
        return surrogate(output, self.signal(site.module, inputs[0], output, weight, bias, ctx))

    def signal(self, module, a, z, weight, bias, ctx):  # pragma: no cover - interface
        raise NotImplementedError


def _split(module, a, w_a, w_b, bias):
    """``layer(a+, w_a, b) + layer(a-, w_b)``, skipping the second term for non-negative inputs."""
    out = layer_forward(module, a.clamp(min=0), w_a, bias)
    if bool((a < 0).any()):
        out = out + layer_forward(module, a.clamp(max=0), w_b, None)
    return out


class Epsilon(Rule):
    """LRP-epsilon: ``R_i = a_i sum_j w_ij R_j / (z_j + eps sign z_j)`` (Bach et al. 2015); eps=0 is LRP-0."""
    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6):
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def forward(self, module, inputs, output, ctx):
        z = output   # (after a canonizer, the merged layer's output)
        return surrogate(z, z * (z / stabilize(z, self.epsilon)).detach())


class ZPlus(_LinearRule):
    """LRP-z+: only positive contributions, ``z+ = W+ a+ + b+ + W- a-`` (Montavon et al. 2017; alpha=1, beta=0)."""
    name = "zplus"

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = float(stabilizer)

    def signal(self, module, a, z, weight, bias, ctx):
        bp = None if bias is None else bias.clamp(min=0)
        zp = _split(module, a, weight.clamp(min=0), weight.clamp(max=0), bp)
        return zp * (z / stabilize(zp, self.stabilizer)).detach()


class AlphaBeta(_LinearRule):
    """LRP-alpha-beta: ``alpha * positive share - beta * negative share`` (Bach et al. 2015); alpha - beta = 1."""
    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs((alpha - beta) - 1.0) > 1e-12:
            raise ValueError(f"alpha - beta must equal 1 for relevance to be conserved, got alpha={alpha}, "
                             f"beta={beta}")
        self.alpha, self.beta, self.stabilizer = float(alpha), float(beta), float(stabilizer)

    def signal(self, module, a, z, weight, bias, ctx):
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        bp = None if bias is None else bias.clamp(min=0)
        pos = _split(module, a, wp, wn, bp)
        out = self.alpha * pos * (z / stabilize(pos, self.stabilizer)).detach()
        if self.beta:
            bn = None if bias is None else bias.clamp(max=0)
            neg = _split(module, a, wn, wp, bn)
            out = out - self.beta * neg * (z / stabilize(neg, self.stabilizer)).detach()
        return out


class Gamma(_LinearRule):
    """Generalised LRP-gamma: positive weights boosted by ``gamma`` (Montavon et al. 2019; Andeol et al. 2021)."""
    name = "gamma"

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6):
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        self.gamma, self.stabilizer = float(gamma), float(stabilizer)

    def signal(self, module, a, z, weight, bias, ctx):
        g = self.gamma
        w_up, w_dn = weight + g * weight.clamp(min=0), weight + g * weight.clamp(max=0)
        b_up = None if bias is None else bias + g * bias.clamp(min=0)
        b_dn = None if bias is None else bias + g * bias.clamp(max=0)
        pos = _split(module, a, w_up, w_dn, b_up)
        neg = _split(module, a, w_dn, w_up, b_dn)
        zd = z.detach()
        return pos * ((zd > 0).to(z) * zd / stabilize(pos, self.stabilizer)).detach() + \
            neg * ((zd < 0).to(z) * zd / stabilize(neg, self.stabilizer)).detach()


class Pass(Rule):
    """Relevance passes an elementwise layer unchanged: ``R_in = R_out`` (signal ``s_out * y / z``)."""
    name = "pass"

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = float(stabilizer)

    def forward(self, module, inputs, output, ctx):
        z = inputs[0]
        if z.shape != output.shape:
            raise ValueError(f"the pass rule needs an elementwise layer; {module.name} maps "
                             f"{tuple(z.shape)} to {tuple(output.shape)}")
        return surrogate(output, z * (output / stabilize(z, self.stabilizer)).detach())


def layer_norm_parts(site, inputs):
    """``(x, dims, weight, bias, eps)`` of a LayerNorm call (module or ``F.layer_norm``)."""
    x = inputs[0]
    shape = site.arg(inputs, 1, "normalized_shape")
    k = 1 if isinstance(shape, int) else len(shape)
    return x, tuple(range(-k, 0)), site.arg(inputs, 2, "weight"), site.arg(inputs, 3, "bias"), \
        float(site.arg(inputs, 4, "eps", 1e-5))


def layer_norm_affine(y: torch.Tensor, weight, bias) -> torch.Tensor:
    """``y * weight + bias`` with LayerNorm's affine parameters held constant (either may be None)."""
    if weight is not None:
        y = y * weight.detach()
    if bias is not None:
        y = y + bias.detach()
    return y


class NormIdentity(Rule):
    """LayerNorm with its standard deviation held constant (the LN rule of Ali et al. 2022): the centring and
    the affine map are linear, so relevance passes conservatively (less the bias share)."""
    name = "layer_norm_identity"

    def forward(self, site, inputs, output, ctx):
        x, dims, w, b, eps = layer_norm_parts(site, inputs)
        c = x - x.mean(dims, keepdim=True)
        std = torch.sqrt(x.detach().var(dims, unbiased=False, keepdim=True) + eps)
        return surrogate(output, layer_norm_affine(c / std, w, b))


class Gate(Rule):
    """A product ``a * g`` of two input-dependent tensors (squeeze-excitation): relevance flows through the
    signal, the gate is held constant (``R_a = R_out``, ``R_g = 0``). The gate is the operand computed by a
    sigmoid-like call, else the broadcast (smaller) one; two equal signals share the relevance half and half."""
    name = "gate"

    def forward(self, site, inputs, output, ctx):
        a, b = inputs[0], inputs[1]
        gate = site.gate
        if gate is None and a.numel() != b.numel():
            gate = 0 if a.numel() < b.numel() else 1
        if gate == 1:
            return surrogate(output, a * b.detach())
        if gate == 0:
            return surrogate(output, a.detach() * b)
        return surrogate(output, 0.5 * (a * b.detach() + a.detach() * b))


# ------------------------------------------------------------------------ input-layer rules
class _InputRule(_LinearRule):
    """Rules for the layer that receives the model input: they return relevance (not a signal) as gradient,
    so the attribution is the gradient itself (not input x gradient)."""
    returns_relevance = True

    def forward(self, site, inputs, output, ctx):
        ctx.check_input_layer(site, inputs[0], self.name)
        return super().forward(site, inputs, output, ctx)


class Flat(_InputRule):
    """LRP-flat: relevance spread uniformly over each neuron's receptive field (Lapuschkin et al. 2019)."""
    name = "flat"

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = float(stabilizer)

    def signal(self, module, x, z, weight, bias, ctx):
        ones = torch.ones_like(weight)
        denom = layer_forward(module, torch.ones_like(x), ones, None)
        return layer_forward(module, x, ones, None) * (z / stabilize(denom, self.stabilizer)).detach()


class WSquare(_InputRule):
    """LRP-w^2: ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (Montavon et al. 2017; bias^2 in the denominator
    as Zennit does)."""
    name = "wsquare"

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = float(stabilizer)

    def signal(self, module, x, z, weight, bias, ctx):
        w2 = weight * weight
        denom = layer_forward(module, torch.ones_like(x), w2, None if bias is None else bias * bias)
        return layer_forward(module, x, w2, None) * (z / stabilize(denom, self.stabilizer)).detach()


class ZBox(_InputRule):
    """LRP-z^B for inputs bounded by ``low <= x <= high`` (Montavon et al. 2017):
    ``R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / z^B_j R_j``. Bounds default to each sample's min/max."""
    name = "zbox"

    def __init__(self, low=None, high=None, stabilizer: float = 1e-6):
        self.low, self.high, self.stabilizer = low, high, float(stabilizer)

    @staticmethod
    def _bound(spec, x, reduce, ctx):
        if spec is None:
            return reduce(x.detach(), dim=tuple(range(1, x.dim())), keepdim=True).expand_as(x)
        t = torch.as_tensor(spec, device=x.device, dtype=x.dtype)
        if t.dim() == x.dim() and t.shape[0] > 1:
            if ctx.rows is None or t.shape[0] != ctx.n:
                raise ValueError(f"z-box bounds with a batch dimension need one row per sample ({ctx.n}), got "
                                 f"shape {tuple(t.shape)}")
            t = t[ctx.rows.to(t.device)]
        try:
            return t.expand_as(x)
        except RuntimeError:
            raise ValueError(f"z-box bound of shape {tuple(t.shape)} does not broadcast to the input of shape "
                             f"{tuple(x.shape)}") from None

    def signal(self, module, x, z, weight, bias, ctx):
        low = self._bound(self.low, x, torch.amin, ctx)
        high = self._bound(self.high, x, torch.amax, ctx)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        xd = x.detach()   # z^B without the bias, as Zennit (the bias takes no relevance)
        zb = layer_forward(module, xd, weight, None) - layer_forward(module, low, wp, None) \
            - layer_forward(module, high, wn, None)
        g = layer_forward(module, x * x.detach(), weight, None) - layer_forward(module, x * low, wp, None) \
            - layer_forward(module, x * high, wn, None)
        return g * (z / stabilize(zb, self.stabilizer)).detach()


class Zero(Epsilon):
    """LRP-0: ``R_i = a_i sum_j w_ij R_j / z_j`` (the epsilon rule with eps = 0)."""

    def __init__(self):
        super().__init__(0.0)


LRP_RULES = {"epsilon": Epsilon, "zero": Zero, "zplus": ZPlus, "alpha_beta": AlphaBeta, "gamma": Gamma, "flat": Flat,
             "wsquare": WSquare, "zbox": ZBox}
INPUT_RULES = ("flat", "wsquare", "zbox")


def make_rule(name: str, **params) -> Rule:
    """Build an LRP rule by name from the parameters its constructor takes (others, and None values, are ignored):
    ``make_rule("gamma", gamma=0.5, epsilon=0.1)`` is ``Gamma(gamma=0.5)``."""
    if not isinstance(name, str) or name not in LRP_RULES:
        raise ValueError(f"unknown LRP rule {name!r}; choose from {', '.join(LRP_RULES)}")
    cls = LRP_RULES[name]
    takes = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in params.items() if k in takes and v is not None})
