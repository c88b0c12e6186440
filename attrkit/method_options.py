"""What each method option means: the text behind ``attrkit methods NAME``, ``ak.methods("NAME")`` and the
options section of ``docs/methods.md``. Names, defaults and types come from the method's signature (the
registry); the meaning comes from here (``"method.option"`` overrides ``"option"``). A test checks that
every option of every registered method has a meaning.
"""
from __future__ import annotations

import inspect

_MASK = ("what an absent player becomes: \"zeros\", \"mean\", \"blur\", \"noise\", a number, a tensor shaped "
         "like one sample, or a background set [M, ...] of rows (tables: the value is averaged over it; "
         "ak.Background(rows) says so explicitly)")

MEANINGS = {
    "abs": "take |gradient| instead of the signed gradient",
    "all_classes": "also compute the values for every output class (info[\"all_classes\"]; one game, no "
                   "extra model evaluations)",
    "alpha": "alpha of the alpha-beta rule (alpha - beta = 1)",
    "base": "the gradient method the noise wraps (saliency, input_x_gradient, integrated_gradients, ...)",
    "base_options": "further KEY=VALUE options handed to the wrapped gradient method (e.g. steps=16)",
    "baseline": "the reference point: \"zeros\", \"mean\", \"blur\", \"noise\", a number or a tensor; for "
                "games the same as masker",
    "batch_pairs": "coalition pairs per round when a tolerance is given",
    "batch_permutations": "antithetic ordering pairs per round when a tolerance is given",
    "beta": "beta of the alpha-beta rule",
    "canonize": "fold BatchNorm into the preceding layer before propagating (the relevance then follows the "
                "network's function)",
    "canonizers": "a list of canonizer objects (attrkit.propagation.Canonizer) replacing the default "
                  "[MergeBatchNorm()]; None: the default, or none with canonize=False",
    "composite": "the rules per layer: a name, epsilon_plus (default), epsilon_plus_flat, epsilon_plus_box, "
                 "epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat, epsilon_gamma_box; an LRPComposite; or a dict "
                 "{\"linear\" / \"conv\" / \"first\" / site kind / site name / module class: rule} "
                 "(docs/extending.md)",
    "distance": "the distance in LIME's exponential kernel between a coalition and the full input: "
                "\"cosine\" or \"euclidean\"",
    "epsilon": "stabiliser of the epsilon rule (larger: less noise, less conservation)",
    "feature_tolerance": "also refine until each sample's per-feature error estimate (relative L2) is below "
                         "this (needs the adaptive rule)",
    "first": "rule for the first layer: \"flat\", \"wsquare\", \"zbox\" (with low/high), any rule name or a Rule "
             "object",
    "gamma": "gamma of the gamma rule (weight of positive contributions)",
    "head_only": "evaluate coalitions through the part of the network after the layer only (None: when the "
                 "model can be split there)",
    "high": "upper input bound for the zbox first-layer rule (default: each sample's maximum)",
    "interpolate": "how the Grad-CAM map is upsampled: \"bilinear\" (the paper) or \"nearest\" (Captum)",
    "kernel_width": "width of LIME's exponential kernel (default as lime: 0.25 for the cosine distance, 0.75 x "
                    "sqrt(players) for the Euclidean one)",
    "local": "image games on CNNs: run the convolutional prefix once per local pattern of players (exact; "
             "None decides by cost, False never, True insists)",
    "occlusion.local": "CNNs: recompute only each window's receptive-field cone, layer by layer, then the rest "
                       "whole (Krypton; exact; None decides by cost, False never, True insists)",
    "low": "lower input bound for the zbox first-layer rule (default: each sample's minimum)",
    "masker": _MASK,
    "max_players": "refuse above this many players (exact Shapley costs 2^players evaluations per sample)",
    "max_steps": "most quadrature points per sample when a tolerance is given",
    "n_samples": "model evaluations per sample (not permutations: Captum's n_samples counts permutations; "
                 "an ordering of l players costs about l - 1 evaluations)",
    "gradient_shap.n_samples": "random (background row, path position) draws per sample, one gradient each",
    "smoothgrad.n_samples": "noisy copies of each input (one gradient each)",
    "smoothgrad_sq.n_samples": "noisy copies of each input (one gradient each)",
    "vargrad.n_samples": "noisy copies of each input (one gradient each)",
    "noise_level": "noise standard deviation as a fraction of each input's value range (max - min)",
    "noise_std": "absolute noise standard deviation (overrides noise_level)",
    "perturbations": "your own noise tensor [n_samples, ...] added to every input (overrides the draws)",
    "players": "the groups of features: a label tensor (ak.grid(x, 4), ak.superpixels(x, 50), "
               "ak.features(x)); on the command line grid:K or superpixels:N; at a layer \"cells\", "
               "\"channels\" or \"grid:K\" (K x K blocks of cells)",
    "reshape": "how a layer output becomes maps [N, channels, *grid]: None reads it automatically (channels-first "
               "maps, ViT token grids with class/register tokens dropped, channels-last maps), or a function "
               "(tensor -> maps) as pytorch-grad-cam's reshape_transform",
    "relu": "keep only the positive part of the map (False: the signed map)",
    "reshape": "how the layer's output reads as a map [N, C, *grid] (None: automatic — token layers on the patch "
               "grid, class/register tokens dropped; channels-last maps): \"channels_first\", \"channels_last\", "
               "\"tokens\", {\"prefix\": p, \"grid\": (h, w)} or a callable",
    "head_fusion": "how the heads' attention matrices are combined per layer: \"mean\", \"max\" or \"min\"",
    "residual": "add the identity for the residual connection (rows renormalised), as Abnar & Zuidema do",
    "query": "which token's row carries the prediction: \"cls\" (row 0), \"mean\" (over the real tokens) or a "
             "position (None: cls for ViTs with a class token and Hugging Face text models, else mean)",
    "attn_lrp.softmax": "rule at the softmax: \"attnlrp\" (the paper's, relevance through q and k too) or "
                        "\"constant\" (attention weights held constant: CP-LRP; the softmax absorbs nothing)",
    "attn_lrp.budget": "also count the relevance biases, class tokens, positions and the softmax absorb "
                       "(info[\"budget\"], info[\"conservation_gap\"]; one more forward + backward per sample)",
    "ridge": "L2 penalty of LIME's weighted least squares (0: plain least squares)",
    "rule": "integrated_gradients: quadrature rule (gauss_legendre, riemann_left/right/middle, riemann_trapezoid, "
            "adaptive); lrp: one rule for every layer (epsilon, zero, zplus, alpha_beta, gamma, or a Rule object)",
    "softmax": "channel weights: softmax of the masked scores over channels (True) or each masked score minus the "
               "all-masked score (False, the paper's increase of confidence)",
    "spread": "how a player's value is painted on its pixels: \"share\" divides it by the player's size (the "
              "map sums to the value), \"value\" paints the value itself on every pixel",
    "stabilizer": "added to denominators to avoid division by zero",
    "stdev": "standard deviation of Gaussian noise added to the input before each draw",
    "steps": "quadrature points per sample (default 32; with a tolerance: points to start from, 9)",
    "stride": "step of the sliding window (default: half the window)",
    "tolerance": "stop early once the estimate's error is below this (integrated_gradients: relative "
                 "completeness gap; kernel_shap/shapley_sampling: max std_err / value range)",
    "window": "size of the occluded window: int or tuple over the spatial dims (default: a quarter of each)",
}

TYPES = {"baseline": "str | float | Tensor", "masker": "str | float | Tensor | Background",
         "players": "Tensor | str", "window": "int | tuple", "stride": "int | tuple", "low": "float | Tensor",
         "high": "float | Tensor", "base_options": "KEY=VALUE ..."}


def signature_options(fn) -> tuple[dict, dict, str]:
    """A method function's options, read from its signature (``MethodSpec`` does it once, at registration):
    name -> default (``inspect.Parameter.empty`` when required), name -> type text, and the name of its
    ``**options`` parameter ("" if none). The first parameter (the ``Problem``) is not an option."""
    options, types, extra = {}, {}, ""
    for name, p in inspect.signature(fn).parameters.items():
        if name == "problem":
            continue
        if p.kind == p.VAR_KEYWORD:
            extra = name
            types[name] = _type(name, p)
            continue
        options[name] = p.default
        types[name] = _type(name, p)
    return options, types, extra


def option_rows(spec) -> list[dict]:
    """``[{"option", "default", "type", "meaning"}]`` for a registry entry, in signature order."""
    rows = []
    names = list(spec.options) + ([spec.extra_options] if spec.extra_options else [])
    for name in names:
        if name == spec.extra_options:
            default = "-"
        else:
            default = "required" if spec.options[name] is inspect.Parameter.empty else repr(spec.options[name])
        rows.append({"option": name, "default": default, "type": spec.option_types.get(name, "any"),
                     "meaning": MEANINGS.get(f"{spec.name}.{name}") or MEANINGS.get(name, "")})
    return rows


def _type(name: str, p) -> str:
    if name in TYPES:
        return TYPES[name]
    ann = p.annotation
    if ann is not p.empty:
        return (ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))).replace("torch.Tensor", "Tensor")
    if p.default not in (p.empty, None):
        return type(p.default).__name__
    return "any"


def describe(spec) -> str:
    """One method as text: its summary, what it needs, and its options as a table."""
    rows = option_rows(spec)
    head = [f"{spec.name} ({spec.family}): {spec.summary}",
            f"  at a layer: {spec.layer}; gradients: {'yes' if spec.gradients else 'no'}; "
            f"players: {'yes' if spec.players else 'no'}; sampled: {'yes' if spec.sampled else 'no'}"
            + (f"; reference: {spec.reference}" if spec.reference else "")]
    if not rows:
        return "\n".join(head + ["  options: none"])
    w = {k: max(len(k), *(len(r[k]) for r in rows)) for k in ("option", "default", "type")}
    lines = ["  " + "  ".join(k.ljust(w[k]) for k in ("option", "default", "type")) + "  meaning"]
    lines += ["  " + "  ".join(r[k].ljust(w[k]) for k in ("option", "default", "type")) + "  " + r["meaning"]
              for r in rows]
    return "\n".join(head + ["options (-O KEY=VALUE on the command line, keyword arguments in Python):"] + lines)


def markdown(specs) -> str:
    """The options of every method as Markdown sections (for docs/methods.md)."""
    out = ["## Options", "",
           "Every option with its default and type, as `ak.explain(..., option=value)` or "
           "`attrkit explain -O option=value`. `n_samples` counts model evaluations per sample, not "
           "permutations as in Captum.", ""]
    for spec in specs:
        out += [f"### `{spec.name}`", ""]
        rows = option_rows(spec)
        if not rows:
            out += ["No options.", ""]
            continue
        out += ["| option | default | type | meaning |", "|---|---|---|---|"]
        out += [f"| `{r['option']}` | `{r['default']}` | {r['type'].replace('|', '&#124;')} | "
                f"{r['meaning'].replace('|', '&#124;')} |" for r in rows]
        out.append("")
    return "\n".join(out)
