"""``captum.attr.visualization``'s two image helpers, drawn in attrkit's colours.

``visualize_image_attr(attr, original_image, method, sign, ...)`` and ``visualize_image_attr_multiple`` take
Captum's arguments and return ``(figure, axis)`` / ``(figure, axes)``. Arrays are ``[H, W, C]`` numpy arrays as in
Captum; ``[C, H, W]`` tensors (attrkit's and torch's layout) are accepted too. The channel sum is shown, scaled by
the ``100 - outlier_perc`` percentile of its magnitude (Captum's normalisation). Without ``cmap`` the map uses
attrkit's colours (red raises the score, blue lowers it, transparent near zero; ``absolute_value`` in violet);
with ``cmap`` it is drawn with that colour map, as Captum does.
"""
from __future__ import annotations

import numpy as np

from ..viz.colors import apply_mode, composite, grey, image_for_display, scale_for, to_rgba

SIGNS = {"all": "signed", "positive": "positive", "negative": "negative", "absolute_value": "absolute"}
METHODS = ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling")


def _hwc(a, what: str) -> np.ndarray:
    """A numpy ``[H, W, C]`` (or ``[H, W]``) array from Captum's ``[H, W, C]`` or a ``[C, H, W]`` tensor."""
    if a is None:
        return None
    is_tensor = hasattr(a, "detach")
    a = a.detach().cpu().numpy() if is_tensor else np.asarray(a)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and is_tensor and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim not in (2, 3):
        raise ValueError(f"{what} must be an image [H, W, C] (or a [C, H, W] tensor), got shape {a.shape}")
    return a.astype(np.float64)


def _rgb(image: np.ndarray) -> np.ndarray:
    """RGB ``[H, W, 3]``: values in [0, 1] are shown as they are (Captum's convention), others min-max scaled."""
    if image.min() >= 0 and image.max() <= 1:
        img = image if image.ndim == 3 else image[..., None]
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]
    return image_for_display(image.transpose(2, 0, 1) if image.ndim == 3 else image)


def _normalised(attr: np.ndarray, sign: str, outlier_perc):
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    if not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc!r}")
    mode = SIGNS[sign]
    v = attr.sum(2) if attr.ndim == 3 else attr
    scale = scale_for(v, mode, clip=100 - outlier_perc)
    return apply_mode(v, mode), scale


def _axes(plt_fig_axis, fig_size, use_pyplot):
    if plt_fig_axis is not None:
        return plt_fig_axis
    if use_pyplot:
        import matplotlib.pyplot as plt
        return plt.subplots(figsize=fig_size)
    from ..viz._mpl import new_figure
    fig = new_figure(*fig_size)
    return fig, fig.add_subplot(1, 1, 1)


def visualize_image_attr(attr, original_image=None, method: str = "heat_map", sign: str = "absolute_value",
                         plt_fig_axis=None, outlier_perc=2, cmap=None, alpha_overlay: float = 0.5,
                         show_colorbar: bool = False, title: str | None = None, fig_size=(6, 6),
                         use_pyplot: bool = True):
    """Draw one attribution map (Captum's ``visualize_image_attr``); returns ``(figure, axis)``.

    ``method``: ``heat_map`` (the map alone), ``blended_heat_map`` (over the grey image, ``alpha_overlay``),
    ``original_image``, ``masked_image`` (the image times the normalised map) or ``alpha_scaling`` (the image
    with the normalised map as opacity). ``sign``: ``all``, ``positive``, ``negative`` or ``absolute_value``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    attr_a, image = _hwc(attr, "attr"), _hwc(original_image, "original_image")
    if method != "heat_map" and image is None:
        raise ValueError(f"method {method!r} needs original_image")
    fig, ax = _axes(plt_fig_axis, fig_size, use_pyplot)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if method == "original_image":
        ax.imshow(_rgb(image))
    else:
        v, scale = _normalised(attr_a, sign, outlier_perc)
        unit = np.clip(np.abs(v) / scale.limit, 0.0, 1.0)
        if method in ("masked_image", "alpha_scaling"):
            if sign == "all":
                raise ValueError(f"method {method!r} needs a one-sided sign (positive, negative or absolute_value), "
                                 "not 'all'")
            rgb = _rgb(image)
            shown = rgb * unit[..., None] if method == "masked_image" else np.concatenate([rgb, unit[..., None]], -1)
            ax.imshow(shown)
        elif cmap is not None:
            if method == "blended_heat_map":
                ax.imshow(grey(_rgb(image)), cmap="gray", vmin=0, vmax=1)
            im = ax.imshow(v, cmap=cmap, vmin=scale.vmin, vmax=scale.vmax,
                           alpha=alpha_overlay if method == "blended_heat_map" else None)
            if show_colorbar:
                fig.colorbar(im, ax=ax)
        else:
            background = grey(_rgb(image)) if method == "blended_heat_map" else None
            opacity = alpha_overlay if method == "blended_heat_map" else 1.0
            ax.imshow(composite(to_rgba(v, scale), background, opacity))
            if show_colorbar:
                from ..viz.heatmaps import add_colorbar
                add_colorbar(fig, ax, scale)
    if title:
        ax.set_title(title)
    if use_pyplot and plt_fig_axis is None:
        import matplotlib.pyplot as plt
        if plt.get_backend().lower() != "agg":
            plt.show()
    return fig, ax


def visualize_image_attr_multiple(attr, original_image, methods, signs, titles=None, fig_size=(8, 6),
                                  use_pyplot: bool = True, **kwargs):
    """Several views side by side (Captum's ``visualize_image_attr_multiple``); returns ``(figure, axes)``."""
    if len(methods) != len(signs):
        raise ValueError(f"methods and signs must have the same length, got {len(methods)} and {len(signs)}")
    if titles is not None and len(titles) != len(methods):
        raise ValueError(f"titles must have one entry per method, got {len(titles)} for {len(methods)}")
    if use_pyplot:
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=fig_size)
    else:
        from ..viz._mpl import new_figure
        fig = new_figure(*fig_size)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for i, (method, sign) in enumerate(zip(methods, signs)):
        visualize_image_attr(attr, original_image=original_image, method=method, sign=sign, plt_fig_axis=(fig, axes[i]),
                             title=titles[i] if titles else None, use_pyplot=False, **kwargs)
    if use_pyplot:
        import matplotlib.pyplot as plt
        if plt.get_backend().lower() != "agg":
            plt.show()
    return fig, axes
