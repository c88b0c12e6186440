"""Captum's backward-rule classes on attrkit's propagation engine: DeepLift, DeepLiftShap, GuidedBackprop,
Deconvolution, GuidedGradCam and LRP."""
from __future__ import annotations

import torch

from ._base import Attribution, as_tuple, baselines_for, formatted, repeat_per_sample, sum_per_sample
from ._gradients import _scores, per_input_background


def _delta(model, xs, baselines, values, target, fargs):
    """``sum(attr) - (f(x) - f(r))`` per sample (Captum's convergence delta)."""
    refs = baselines_for(baselines, xs)
    refs = refs if isinstance(refs, tuple) else (refs,)
    rs = tuple(torch.broadcast_to(torch.as_tensor(r, dtype=x.dtype, device=x.device), x.shape)
               for r, x in zip(refs, xs))
    total = sum_per_sample(values)
    return total - (_scores(model, xs, target, fargs) - _scores(model, rs, target, fargs)).to(total.dtype)


class DeepLift(Attribution):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017) on attrkit's propagation engine: each nonlinearity
    passes ``(y - y_ref) / (x - x_ref)`` backwards. ``return_convergence_delta=True`` also returns
    ``sum(attr) - (f(x) - f(r))`` (zero up to rounding: DeepLIFT is complete).

    Max-pooling with a baseline that differs from the input: attrkit's max-pool rule keeps completeness
    (delta ~ 0); Captum 0.9's does not (its own delta is nonzero), so the two differ there and agree elsewhere."""

    def __init__(self, model, multiply_by_inputs: bool = True, eps: float = 1e-10):
        super().__init__(model)
        if not multiply_by_inputs:
            raise ValueError("multiply_by_inputs=False (the multipliers alone) is not supported by compat DeepLift")
        self._multiply_by_inputs, self.eps = True, eps

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta=False, custom_attribution_func=None):
        return deeplift_call(self, inputs, baselines, target, additional_forward_args, return_convergence_delta,
                             custom_attribution_func)


def deeplift_call(obj, inputs, baselines, target, additional_forward_args, return_convergence_delta,
                  custom_attribution_func, layer=None):
    """DeepLift's and LayerDeepLift's ``attribute``: attrkit's DeepLIFT at the input or at ``layer``; with
    ``return_convergence_delta`` Captum's ``(attributions, delta)``."""
    if custom_attribution_func is not None:
        raise ValueError(f"custom_attribution_func is not supported by the compat {type(obj).__name__}")
    xs, _ = as_tuple(inputs)
    a, values = obj._run(obj.forward_func, inputs, "deeplift", target=target, layer=layer,
                         additional_forward_args=additional_forward_args, baseline=baselines_for(baselines, xs))
    if return_convergence_delta:
        return values, _delta(obj.forward_func, tuple(x.detach() for x in xs), baselines, values, target,
                              additional_forward_args)
    return values


class DeepLiftShap(DeepLift):
    """DeepLIFT averaged over a background set (Lundberg & Lee 2017): every sample is explained against every
    baseline row (one batched attrkit call on the ``N x M`` pairs) and the attributions are averaged."""

    def attribute(self, inputs, baselines, target=None, additional_forward_args=None,
                  return_convergence_delta=False, custom_attribution_func=None):
        if custom_attribution_func is not None:
            raise ValueError("custom_attribution_func is not supported by the compat DeepLiftShap")
        xs, single = as_tuple(inputs)
        xs = tuple(x.detach() for x in xs)
        bgs = per_input_background(baselines, xs)
        n, m = xs[0].shape[0], bgs[0].shape[0]
        if any(b.shape[0] != m for b in bgs):
            raise ValueError("every input's background set must have the same number of rows")
        if m < 2:
            raise ValueError("DeepLiftShap needs a background set of at least 2 rows (use DeepLift for one baseline)")
        big = tuple(x.repeat_interleave(m, 0) for x in xs)
        refs = tuple(b.repeat((n,) + (1,) * (b.dim() - 1)) for b in bgs)
        tgt, fargs = repeat_per_sample(target, additional_forward_args, m, n)
        a, values = self._run(self.forward_func, big[0] if single else big, "deeplift", target=tgt,
                              additional_forward_args=fargs, baseline=refs[0] if len(xs) == 1 else refs)
        parts = (values,) if single else values
        mean = tuple(v.reshape((n, m) + tuple(v.shape[1:])).mean(1) for v in parts)
        out = formatted(mean[0] if single else mean, single)
        if return_convergence_delta:
            d = _delta(self.forward_func, big, refs, values, tgt, fargs)
            return out, d
        return out


class GuidedBackprop(Attribution):
    """Guided Backpropagation (Springenberg et al. 2015): ReLUs pass only positive gradients for positive inputs."""

    def attribute(self, inputs, target=None, additional_forward_args=None):
        return self._run(self.forward_func, inputs, "guided_backprop", target=target,
                         additional_forward_args=additional_forward_args)[1]


class Deconvolution(Attribution):
    """DeconvNet (Zeiler & Fergus 2014): ReLUs pass the positive part of the gradient, whatever the input."""

    def attribute(self, inputs, target=None, additional_forward_args=None):
        return self._run(self.forward_func, inputs, "deconvnet", target=target,
                         additional_forward_args=additional_forward_args)[1]


class GuidedGradCam(Attribution):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the ReLU'd Grad-CAM of ``layer``
    upsampled to the input (``interpolate_mode``: Captum's default ``"nearest"``, or ``"bilinear"``)."""

    def __init__(self, model, layer, device_ids=None):
        super().__init__(model)
        self.layer = layer

    def attribute(self, inputs, target=None, additional_forward_args=None, interpolate_mode="nearest",
                  attribute_to_layer_input=False):
        if attribute_to_layer_input:
            raise ValueError("attribute_to_layer_input=True is not supported by the compat layer: pass the module "
                             "before it as layer")
        if interpolate_mode not in ("nearest", "bilinear"):
            raise ValueError(f"interpolate_mode must be 'nearest' or 'bilinear' here, got {interpolate_mode!r}")
        return self._run(self.forward_func, inputs, "guided_grad_cam", target=target, layer=self.layer,
                         additional_forward_args=additional_forward_args, interpolate=interpolate_mode,
                         input_shaped=True)[1]


class LRP(Attribution):
    """Layer-wise Relevance Propagation with Captum's default rules: epsilon rule (``1e-9``) for linear and
    convolution layers, activations passed through (Bach et al. 2015). Other rule sets: attrkit's native
    ``ak.explain(model, x, "lrp", composite=...)``."""

    def has_convergence_delta(self) -> bool:
        return True

    def attribute(self, inputs, target=None, additional_forward_args=None, return_convergence_delta=False,
                  verbose=False):
        a, values = self._run(self.forward_func, inputs, "lrp", target=target,
                              additional_forward_args=additional_forward_args, rule="epsilon", epsilon=1e-9,
                              canonize=False)
        if return_convergence_delta:
            total = sum_per_sample(values)
            return values, a.info["f_x"].to(total.dtype) - total      # Captum's sign for LRP: f(x) - sum(R)
        return values
