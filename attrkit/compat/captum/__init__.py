"""Captum's ``captum.attr`` classes on attrkit's engines: ``from attrkit.compat import captum as attr``.

Constructors, ``attribute(...)`` arguments and return structures follow Captum 0.9 (a tensor, or a tuple in the
structure of ``inputs``; ``(attributions, delta)`` with ``return_convergence_delta=True``). Each class's
docstring says where attrkit computes a different number on purpose. Captum is never imported.
"""
from ._base import Attribution
from ._gradients import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from ._layer import (LayerActivation, LayerAttribution, LayerConductance, LayerDeepLift, LayerFeatureAblation,
                     LayerGradCam, LayerGradientXActivation, LayerIntegratedGradients, NeuronGradient,
                     NeuronIntegratedGradients, TokenReferenceBase)
from ._lime import Lime
from ._perturbation import (FeatureAblation, FeaturePermutation, KernelShap, Occlusion, ShapleyValues,
                            ShapleyValueSampling)
from ._propagation import LRP, Deconvolution, DeepLift, DeepLiftShap, GuidedBackprop, GuidedGradCam

__all__ = ["Attribution", "GradientShap", "InputXGradient", "IntegratedGradients", "NoiseTunnel", "Saliency",
           "LRP", "Deconvolution", "DeepLift", "DeepLiftShap", "GuidedBackprop", "GuidedGradCam",
           "FeatureAblation", "FeaturePermutation", "KernelShap", "Occlusion", "ShapleyValues",
           "ShapleyValueSampling", "Lime", "LayerActivation", "LayerConductance", "LayerDeepLift",
           "LayerFeatureAblation", "LayerGradCam", "LayerGradientXActivation", "LayerIntegratedGradients",
           "NeuronGradient", "NeuronIntegratedGradients", "LayerAttribution", "TokenReferenceBase"]
