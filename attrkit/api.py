"""``explain``: validate once, dispatch to a registered method, wrap the result in an ``Attribution``."""
from __future__ import annotations

import time

import torch

from .attribution import Attribution
from .core.checks import resolve_seed
from .core.modules import eval_mode
from .core.problem import build_problem
from .core.trace import trace_cache
from .core import tokens
from .progress import call_bar
from .registry import REQUIRED, MethodSpec, get


def explain(model, x, method: str = "integrated_gradients", target=None, *, layer=None, noise=None,
            batch_size: int | None = None, max_memory: int | None = None, seed: int | None = None,
            progress: bool | None = None, forward_args=None, forward_kwargs=None, class_names=None,
            feature_names=None, **options) -> Attribution:
    """Attribute the model's ``target`` output for the batch ``x`` with ``method``.

    model: ``nn.Module`` or callable mapping ``[N, ...]`` to ``[N, outputs]`` or ``[N]`` (or to a tuple, dict,
        dataclass or Hugging Face ``ModelOutput``: ``target=`` then selects the output).
    x: a batch (tables ``[N, F]``, series ``[N, C, L]``, images ``[N, C, H, W]``, volumes ``[N, C, D, H, W]``);
        or several inputs: a tuple of batches (passed positionally; ``a.values`` is a tuple, as in Captum) or a
        dict (passed as keyword arguments; ``a.values`` is a dict).
    target: int | per-sample sequence/tensor | None (predicted class) | callable(output) -> ``[N]``; for a
        structured output ``(field, class)``, e.g. ``("logits", 3)`` or ``(0, 3)``, or a callable on the raw output.
    forward_args / forward_kwargs: non-attributed arguments appended to the model call (a tuple / a dict), e.g.
        an attention mask; tensors whose first dimension is ``N`` are chunked and repeated with their samples.
    layer: module name or module, for attributions at a hidden layer.
    noise: wrap a gradient method in SmoothGrad — ``True``, a noise level, or a dict of
        ``n_samples``, ``noise_level``, ``kind`` ("smoothgrad" | "smoothgrad_sq" | "vargrad").
    batch_size / max_memory: rows per model call, or the memory budget they are derived from.
    seed: makes sampled methods (and random references) reproducible; None draws a fresh seed, recorded in
        ``info["seed"]`` (pass it back to repeat the run). progress: one progress bar for the whole call (True:
        always; False: never; None: only on a terminal, once the call has run for 2 s).
    class_names / feature_names: labels of the outputs and of tabular columns carried by the result (plots, report,
        save/load); default ``model.meta["classes"]`` / ``model.meta["feature_names"]`` when the model has them.
    options: the method's own parameters, e.g. ``baseline=``, ``steps=``, ``rule=``, ``players=``; with several
        inputs ``baseline=``/``masker=``/``players=`` may be tuples (dicts) with one entry per input.

    >>> import torch, attrkit as ak
    >>> model = torch.nn.Linear(3, 2)
    >>> a = ak.explain(model, torch.ones(1, 3), method="integrated_gradients", target=1)
    >>> torch.allclose(a.values, model.weight[1:2].detach(), atol=1e-6)
    True
    """
    spec = method if isinstance(method, MethodSpec) else get(method)   # a spec: unregistered recipes (compat)
    class_names, feature_names = _names(model, class_names, feature_names)
    seed = resolve_seed(seed)
    spec.validate(options, layer=layer, noise=noise)
    start = time.perf_counter()
    with eval_mode(model):
        # a method whose own forward pass can be explain's (spec.shared_pass): prepare runs under it, once
        shared_fn = spec.shared_pass if noise is None else None
        shared = None if shared_fn is None else (
            lambda m, lay: shared_fn(m, x, lay, forward_args, forward_kwargs, batch_size, max_memory, options))
        problem = build_problem(model, x, target, layer=layer, forward_args=forward_args,
                                forward_kwargs=forward_kwargs, batch_size=batch_size, max_memory=max_memory,
                                seed=seed, progress=progress, shared_pass=shared)
        x, tgt, outputs, layout = problem.inputs, problem.target, problem.outputs, problem.layout
        model = problem.user_model                # (a torch.compile'd model unwrapped)
        choice = None
        if spec.layer == "required" and layer is None:
            choice = _default_layer(spec, model, problem)
            problem = problem.at_layer(choice.name, choice.module)
        tok = tokens.prepare(model, x, spec, problem.layer_name, problem.layer, options, noise, problem)  # ids
        layer_name, layer_mod, options = tok.layer_name, tok.layer, tok.options
        problem = problem.at_layer(layer_name, layer_mod)
        if layout is not None:
            options = _pack_options(spec, options, layout, x, seed, at_layer=layer_mod is not None)
        with tok.context(), call_bar(progress, f"attrkit {spec.name}"), trace_cache():   # one bar, one trace
            result = _run(spec, problem, options, noise)
        result = tok.restore(result)
        if layer_name is not None and spec.family in ("gradient", "propagation"):   # token layers: on the grid
            from .core.token_grid import layer_values_grid
            layer_values_grid(problem, result)
        name = _name(spec, options, noise)
    info = dict(result.info)
    info.setdefault("n_evals", 0)
    info["n_evals"] = int(info["n_evals"]) + x.shape[0]   # the forward pass on x itself
    info["seconds"] = time.perf_counter() - start
    info.setdefault("exact", False)
    info["seed"] = seed
    if choice is not None:
        info["layer_choice"] = choice.why
    if problem.compiled:
        info["compiled"] = problem.compiled
    baseline = result.baseline if result.baseline is not None else options.get("baseline")
    values, players = result.values.detach(), result.players
    if layout is not None:
        unpack = lambda t: layout.structure(layout.unpack_like(t)) if isinstance(t, torch.Tensor) and \
            t.dim() == 2 and t.shape[1] == layout.width else t
        values = unpack(values) if layer_name is None or tok.per_token else values
        baseline = unpack(baseline.detach() if isinstance(baseline, torch.Tensor) else baseline)
        players = unpack(players) if layer_name is None or tok.per_token else players
        info = {k: unpack(v) for k, v in info.items()}
    return Attribution(values=values, method=name,
                       target=tgt.classes if tgt.classes is not None else tgt.label,
                       layer=layer_name, baseline=baseline, inputs=_detach(problem.structured),
                       outputs=outputs.detach(), info=info, players=players, feature_names=feature_names,
                       class_names=class_names)


def _names(model, class_names, feature_names):
    """The names given, else the model's ``meta["classes"]`` / ``meta["feature_names"]`` (zoo models, attrkit.train)."""
    meta = getattr(model, "meta", None)
    meta = meta if isinstance(meta, dict) else {}
    if class_names is None:
        class_names = meta.get("classes")
    if feature_names is None:
        feature_names = meta.get("feature_names")
    for what, names in (("class_names", class_names), ("feature_names", feature_names)):
        if names is not None and not isinstance(names, (list, tuple, dict)):
            raise TypeError(f"{what} must be a list (or dict) of names, got {type(names).__name__}")
    return (list(class_names) if isinstance(class_names, tuple) else class_names,
            [str(f) for f in feature_names] if feature_names is not None and not isinstance(feature_names, dict)
            else feature_names)


def _run(spec, problem, options, noise):
    if noise is not None and noise is not False:
        from .gradients.noise import noise_options, with_noise
        return with_noise(problem, base=spec.name, **noise_options(noise), **options)
    return spec.fn(problem, **options)


def _name(spec, options, noise) -> str:
    if noise is not None and noise is not False:
        from .gradients.noise import noise_options
        return f"{noise_options(noise).get('kind', 'smoothgrad')}({spec.name})"
    if options.get("base") and spec.name in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        return f"{spec.name}({options['base']})"
    return spec.name


def _detach(x):
    if isinstance(x, dict):
        return {k: v.detach() for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v.detach() for v in x)
    return x.detach()


def _pack_options(spec, options: dict, layout, flat, seed, at_layer: bool) -> dict:
    """Per-input baselines, maskers and players -> the packed forms the single-tensor engines read."""
    from .core.inputs import pack_reference
    out = dict(options)
    for name in ("baseline", "masker"):
        if name in out and getattr(out[name], "parts", None) is not None:     # ak.Background of several inputs
            out[name] = out[name].packed(layout)
        elif name in out:
            out[name] = pack_reference(out[name], layout, flat, seed, name)
        elif spec.takes(name) and spec.options[name] is not REQUIRED:
            default = spec.options[name]
            packed = pack_reference(default, layout, flat, seed, name)
            if packed is not default:          # a geometry-dependent default ("mean", "blur"): made per input
                out[name] = packed
    if spec.takes("players") and not at_layer:
        from .games.packing import pack_players
        given = out.get("players")
        if given is None or not isinstance(given, str):
            out["players"] = pack_players(given, layout, flat)
    return out


def _default_layer(spec, model, prep):
    """The method's automatic layer (a ``core.auto_layer.LayerChoice``), found on one forward pass of ``prep``
    (the ``Problem``)."""
    from .core.adapter import rows_of
    finder = spec.default_layer
    if finder is None:
        raise ValueError(f"method {spec.name!r} needs layer=")

    def forward(row):
        with rows_of(prep.model, torch.arange(row.shape[0])):
            return prep.model(row)
    return finder(model, prep.inputs, forward, prep.layout)
