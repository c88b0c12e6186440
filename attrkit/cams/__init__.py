"""Class activation maps: a layer's activations combined with its gradients (:mod:`.cam`) or with batched
forward passes (:mod:`.cam_perturb`).

A CAM is one function of the layer's maps ``A [N, K, *s]`` and gradients ``G``; :func:`gradient_cam` owns the
layer, the gradients, the layout of token layers and the cam_result (``docs/extending.md``, "A CAM").
"""
from .cam import default_cam_layer, cam_result, gradient_cam, last_conv, layer_maps, weighted

__all__ = ["default_cam_layer", "cam_result", "gradient_cam", "last_conv", "layer_maps", "weighted"]
