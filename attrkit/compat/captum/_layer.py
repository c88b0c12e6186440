"""Captum's layer and neuron classes: attrkit's ``layer=`` argument behind Captum's class-per-layer names.

LayerIntegratedGradients, LayerGradCam, LayerActivation, LayerConductance, LayerGradientXActivation,
LayerDeepLift, LayerFeatureAblation, NeuronGradient and NeuronIntegratedGradients.
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.problem import Result
from ...core.references import make_reference
from ...gradients.engine import gradient_sum
from ...gradients.quadrature import nodes
from ._base import Attribution, as_tuple, baselines_for, forward_args, path_delta, rows_per_call, spec
from ._gradients import rule_of


def _no_layer_input(flag, what="attribute_to_layer_input"):
    if flag:
        raise ValueError(f"{what}=True is not supported by the compat layer: pass the module that produces that "
                         "input as layer (its output is the layer's input)")


class _LayerAttribution(Attribution):
    def __init__(self, forward_func, layer, device_ids=None, multiply_by_inputs: bool = True):
        super().__init__(forward_func)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a module of the model, got {type(layer).__name__}")
        if not multiply_by_inputs:
            raise ValueError("multiply_by_inputs=False is not supported by the compat layer classes")
        self.layer, self._multiply_by_inputs = layer, True


class LayerIntegratedGradients(_LayerAttribution):
    """Integrated Gradients in the activation space of ``layer``: the path runs from the layer's activation at
    the baselines to its activation at the inputs (Captum's definition; embeddings of token ids included)."""

    _method = "integrated_gradients"     # LayerConductance: the same call on its own recipe

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None, return_convergence_delta=False,
                  attribute_to_layer_input=False, grad_kwargs=None):
        _no_layer_input(attribute_to_layer_input)
        xs, _ = as_tuple(inputs)
        a, values = self._run(self.forward_func, inputs, self._method, target=target, layer=self.layer,
                              additional_forward_args=additional_forward_args, batch_size=internal_batch_size,
                              baseline=baselines_for(baselines, xs), steps=int(n_steps), rule=rule_of(method))
        return path_delta(a, values, return_convergence_delta)


class LayerGradCam(_LayerAttribution):
    """Grad-CAM (Selvaraju et al. 2017) at ``layer``: ``sum_k mean(dF/dA_k) A_k``, ``[N, 1, *layer]``, signed
    unless ``relu_attributions=True`` (Captum's defaults); ``attr_dim_summation=False`` keeps one map per
    channel."""

    def attribute(self, inputs, target=None, additional_forward_args=None, attribute_to_layer_input=False,
                  relu_attributions=False, attr_dim_summation=True, grad_kwargs=None):
        _no_layer_input(attribute_to_layer_input)
        if attr_dim_summation:
            return self._run(self.forward_func, inputs, "grad_cam", target=target, layer=self.layer,
                             additional_forward_args=additional_forward_args, relu=bool(relu_attributions))[1]
        # per channel: mean(dF/dA_k) * A_k, not summed over the channels
        grads = self._run(self.forward_func, inputs, "saliency", target=target, layer=self.layer,
                          additional_forward_args=additional_forward_args, abs=False)[1]
        acts = LayerActivation(self.forward_func, self.layer).attribute(inputs, additional_forward_args)
        cam = grads.mean(dim=tuple(range(2, grads.dim())), keepdim=True) * acts
        return cam.clamp_min(0) if relu_attributions else cam


def _activation(problem):
    return Result(problem.activation(problem.inputs), {"n_evals": problem.n})


ACTIVATION = spec("layer_activation", _activation, layer="required")


class LayerActivation(_LayerAttribution):
    """The activation of ``layer`` for the inputs."""

    def attribute(self, inputs, additional_forward_args=None, attribute_to_layer_input=False):
        _no_layer_input(attribute_to_layer_input)
        return self._run(self.forward_func, inputs, ACTIVATION, layer=self.layer, check=False,
                         additional_forward_args=additional_forward_args)[1]


def _conductance(problem, baseline, steps: int, rule: str):
    """Layer conductance (Dhamdhere et al. 2018) as Captum computes it: on ``steps + 1`` points ``p_k`` of the
    input path, ``sum_k dF/dy(p_k) * (y(p_{k+1}) - y(p_k))`` for the layer activation ``y``."""
    x = problem.inputs
    ref = make_reference(baseline, x, seed=problem.seed)
    alphas, _ = nodes(rule, steps + 1)
    alphas = alphas.to(x.device, x.dtype)
    diff = x - ref
    bc = lambda a: a.view((-1,) + (1,) * (x.dim() - 1))
    ones = torch.ones(1, dtype=torch.float64)

    def plan(rows, ks):
        p0 = ref[rows] + bc(alphas[ks.to(x.device)]) * diff[rows]
        p1 = ref[rows] + bc(alphas[ks.to(x.device) + 1]) * diff[rows]
        with torch.no_grad(), problem.tap() as tap:      # one forward pass: the engine's own tap sees one call
            problem.forward(torch.cat([p0, p1]), torch.cat([rows, rows]))
            acts = tap.output.detach()
        return p0, ones.expand(len(rows)), acts[len(rows):] - acts[:len(rows)]

    shape = tuple(problem.activation(x[:1], torch.arange(1)).shape[1:])
    values, n = gradient_sum(problem, torch.arange(problem.n), steps, plan, shape, grad_at="layer",
                             desc="layer conductance")
    rows = torch.arange(problem.n)
    f_x = problem.target(problem.outputs, rows).to(torch.float64)
    f_r = problem.evaluate(ref, rows).to(torch.float64)
    return Result(values, {"n_evals": 3 * n + problem.n, "f_x": f_x, "f_baseline": f_r}, baseline=ref)


CONDUCTANCE = spec("layer_conductance", _conductance, layer="required")


class LayerConductance(LayerIntegratedGradients):
    """Conductance of each unit of ``layer`` (Dhamdhere et al. 2018): the flow of Integrated Gradients through
    it, ``sum_k dF/dy(p_k) (y(p_{k+1}) - y(p_k))`` on ``n_steps + 1`` points of ``method`` along the input
    path, as Captum computes it (its riemann_trapezoid points included)."""

    _method = CONDUCTANCE


class LayerGradientXActivation(_LayerAttribution):
    """``A * dF/dA`` at ``layer``."""

    def attribute(self, inputs, target=None, additional_forward_args=None, attribute_to_layer_input=False,
                  grad_kwargs=None):
        _no_layer_input(attribute_to_layer_input)
        return self._run(self.forward_func, inputs, "input_x_gradient", target=target, layer=self.layer,
                         additional_forward_args=additional_forward_args)[1]


class LayerDeepLift(_LayerAttribution):
    """DeepLIFT (rescale) at ``layer``: ``(A(x) - A(r)) * m`` with the rescale multipliers ``m``."""

    def __init__(self, model, layer, multiply_by_inputs: bool = True):
        super().__init__(model, layer, multiply_by_inputs=multiply_by_inputs)

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta=False, attribute_to_layer_input=False, custom_attribution_func=None,
                  grad_kwargs=None):
        _no_layer_input(attribute_to_layer_input)
        from ._propagation import deeplift_call
        return deeplift_call(self, inputs, baselines, target, additional_forward_args, return_convergence_delta,
                             custom_attribution_func, layer=self.layer)


class LayerFeatureAblation(_LayerAttribution):
    """Ablate units of ``layer`` (each unit alone, or the groups of ``layer_mask``) to ``layer_baselines``
    (default 0) and credit the drop of the output to them; only the part of the network after the layer runs
    for each ablation when it can be split there."""

    def attribute(self, inputs, layer_baselines=None, target=None, additional_forward_args=None, layer_mask=None,
                  attribute_to_layer_input=False, perturbations_per_eval=1):
        _no_layer_input(attribute_to_layer_input)
        xs, _ = as_tuple(inputs)
        if layer_mask is None:
            shape = _layer_shape(self.forward_func, self.layer, xs, additional_forward_args)
            layer_mask = torch.arange(int(torch.tensor(shape).prod())).view((1,) + shape)
        base = 0.0 if layer_baselines is None else layer_baselines
        return self._run(self.forward_func, inputs, "feature_ablation", target=target, layer=self.layer,
                         additional_forward_args=additional_forward_args, players=torch.as_tensor(layer_mask).long(),
                         baseline=float(base) if isinstance(base, (int, float)) else base, spread="paint",
                         batch_size=rows_per_call(perturbations_per_eval, xs[0].shape[0]))[1]


class _Stop(Exception):
    pass


@torch.no_grad()
def _layer_shape(model, layer, xs, args) -> tuple:
    seen = {}

    def hook(_, __, out):
        seen["shape"] = tuple(out.shape[1:])
        raise _Stop

    h = layer.register_forward_hook(hook)
    try:
        model(*(x[:1] for x in xs), *_first_rows(forward_args(args) or (), xs[0].shape[0]))
    except _Stop:
        pass
    finally:
        h.remove()
    return seen["shape"]


def _first_rows(args, n):
    return tuple(a[:1] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == n else a for a in args)


class NeuronOutput(nn.Module):
    """The model cut at ``layer``: returns one neuron of the layer per sample (``selector``: an int, a tuple of
    indices/slices (slices are summed, as in Captum) or a callable on the layer output)."""

    def __init__(self, model, layer, selector):
        super().__init__()
        self.model, self.layer, self.selector = model, layer, selector

    def forward(self, *args, **kwargs):
        seen = {}

        def hook(_, __, out):
            seen["out"] = out
            raise _Stop

        h = self.layer.register_forward_hook(hook)
        try:
            self.model(*args, **kwargs)
        except _Stop:
            pass
        finally:
            h.remove()
        if "out" not in seen:
            raise ValueError("the layer given to the neuron class did not run in the model's forward")
        out = seen["out"]
        if callable(self.selector):
            return self.selector(out)
        sel = self.selector if isinstance(self.selector, tuple) else (self.selector,)
        v = out[(slice(None),) + sel]
        return v.reshape(v.shape[0], -1).sum(1)


class NeuronGradient(_LayerAttribution):
    """Gradient of one neuron of ``layer`` with respect to the inputs."""

    def attribute(self, inputs, neuron_selector, additional_forward_args=None, attribute_to_neuron_input=False):
        _no_layer_input(attribute_to_neuron_input, "attribute_to_neuron_input")
        return self._run(NeuronOutput(self.forward_func, self.layer, neuron_selector), inputs, "saliency",
                         additional_forward_args=additional_forward_args, abs=False)[1]


class NeuronIntegratedGradients(_LayerAttribution):
    """Integrated Gradients of one neuron of ``layer`` with respect to the inputs."""

    def attribute(self, inputs, neuron_selector, baselines=None, additional_forward_args=None, n_steps=50,
                  method="gausslegendre", internal_batch_size=None, attribute_to_neuron_input=False):
        _no_layer_input(attribute_to_neuron_input, "attribute_to_neuron_input")
        xs, _ = as_tuple(inputs)
        return self._run(NeuronOutput(self.forward_func, self.layer, neuron_selector), inputs, "integrated_gradients",
                         additional_forward_args=additional_forward_args, batch_size=internal_batch_size,
                         baseline=baselines_for(baselines, xs), steps=int(n_steps), rule=rule_of(method))[1]


class LayerAttribution:
    """Captum's helper for layer maps: ``LayerAttribution.interpolate(attr, (H, W))`` resizes a layer map to an
    input's size (``interpolate_mode`` as ``torch.nn.functional.interpolate``'s ``mode``)."""

    @staticmethod
    def interpolate(layer_attribution, interpolate_dims, interpolate_mode: str = "nearest"):
        import torch.nn.functional as F
        return F.interpolate(layer_attribution, size=interpolate_dims, mode=interpolate_mode)


class TokenReferenceBase:
    """Captum's text helper: a reference sequence of ``reference_token_idx`` (e.g. the padding id)."""

    def __init__(self, reference_token_idx: int = 0):
        self.reference_token_idx = int(reference_token_idx)

    def generate_reference(self, sequence_length: int, device=None):
        return torch.full((int(sequence_length),), self.reference_token_idx, dtype=torch.long, device=device)
