"""One registry of methods: it feeds ``ak.methods()``, ``explain``'s dispatch, the CLI's choices, the docs'
method table and the contract tests that run over every method."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

# Modules whose import registers methods (each family adds its module here).
METHOD_MODULES = (
    "attrkit.gradients.methods",
    "attrkit.gradients.noise",
    "attrkit.propagation.guided",
    "attrkit.propagation.lrp",
    "attrkit.propagation.deeplift",
    "attrkit.cams.cam",
    "attrkit.cams.cam_perturb",
    "attrkit.games.estimators",
    "attrkit.transformers.methods",
    "attrkit.transformers.attnlrp",
)

_REGISTRY: dict[str, "MethodSpec"] = {}
REQUIRED = inspect.Parameter.empty     # the default of an option that has none
_loaded = False


@dataclass(frozen=True)
class MethodSpec:
    """What a method is and what it needs.

    ``layer``: "optional" (input or any layer), "required" (only at a layer, e.g. CAMs) or "never".
    ``error``: the ``info`` key of the method's own per-sample error figure ("" if none): ``completeness_gap``
    (``|sum(values) - (f(x) - f(reference))|``) for every path and propagation method that has one,
    ``std_err`` for sampled estimators.
    ``torchscript``: whether a TorchScript model is accepted at the input (methods that hook the model's layers
    refuse it with a TypeError; ``layer=`` always needs hooks). Default: gradient and game methods accept it.
    ``default_layer``: ``finder(model, inputs, forward, layout) -> core.auto_layer.LayerChoice``, the layer used
    when ``layer=`` is not given (None: a method with ``layer="required"`` then needs ``layer=``).
    ``shared_pass``: ``(model, x, layer, forward_args, forward_kwargs, batch_size, max_memory, options) -> context
    manager | None``: the method's own pass, under which ``explain``'s first forward runs so the method reuses it
    (AttnLRP: one forward + backward instead of two forwards + backward); None: an ordinary no-grad forward.
    ``options``: option name -> default (``REQUIRED`` when it has none), read once from ``fn``'s signature;
    ``extra_options``: the name of ``fn``'s ``**options`` parameter ("" if none: only ``options`` are accepted).
    ``fn(problem, **options) -> Result`` computes it.
    """
    name: str
    fn: Callable
    family: str                    # "gradient" | "propagation" | "cam" | "game" | "attention"
    summary: str
    gradients: bool = True
    layer: str = "optional"
    players: bool = False
    baseline: bool = False
    sampled: bool = False
    exact: bool = False
    reference: str = ""
    error: str = ""
    torchscript: bool | None = None
    default_layer: Callable | None = None
    shared_pass: Callable | None = None
    options: Mapping = field(default_factory=dict)
    extra_options: str = ""
    option_types: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.layer not in ("optional", "required", "never"):
            raise ValueError(f"method {self.name!r}: layer must be 'optional', 'required' or 'never', got {self.layer!r}")
        if self.default_layer is not None and self.layer == "never":
            raise ValueError(f"method {self.name!r} never works at a layer, so it cannot have a default_layer")
        if not self.options and not self.extra_options:       # read the signature once, here
            from .method_options import signature_options
            options, types, extra = signature_options(self.fn)
            object.__setattr__(self, "options", options)
            object.__setattr__(self, "option_types", types)
            object.__setattr__(self, "extra_options", extra)
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "option_types", MappingProxyType(dict(self.option_types)))

    def takes(self, option: str) -> bool:
        """Whether ``option`` is one of the method's named options."""
        return option in self.options

    @property
    def reference_option(self) -> str:
        """The option that sets the method's reference point or absent value: ``baseline``, else ``masker``
        ("" if it takes neither)."""
        return next((k for k in ("baseline", "masker") if k in self.options), "")

    @property
    def budget_option(self) -> str:
        """The option that sets a sampled method's budget (``n_samples``; "" if none)."""
        return "n_samples" if "n_samples" in self.options else ""

    def validate(self, options: Mapping, *, layer=None, noise=None) -> None:
        """Raise before any work when a call cannot run: ``layer=`` for a method that never works at a layer
        (ValueError), an option the method does not take (TypeError; token options such as ``pad_id`` are
        ``explain``'s own), a ``noise=`` the noise wrapper does not take or a non-gradient method (ValueError,
        TypeError; names from :data:`attrkit.gradients.noise.NOISE_OPTIONS`)."""
        if self.layer == "never" and layer is not None:
            raise ValueError(f"method {self.name!r} does not work at a layer; drop layer=")
        if not self.extra_options:
            from .core.tokens import ID_OPTIONS
            bad = [k for k in options if k not in self.options and k not in ID_OPTIONS]
            if bad:
                raise TypeError(f"method {self.name!r} does not take option(s) {', '.join(map(repr, bad))}; "
                                f"its options are: {', '.join(self.options) or '(none)'}")
        if noise is not None and noise is not False:
            from .gradients.noise import noise_options
            noise_options(noise)
            if self.family != "gradient":
                raise ValueError(f"noise= wraps gradient methods; {self.name!r} is a {self.family} method")

    def quick_options(self, x, level: str, **settings) -> dict | None:
        """The options this method gets in a batch job at ``level`` (:func:`attrkit.quick_options.quick_options`)."""
        from .quick_options import quick_options
        return quick_options(self, x, level, **settings)

    def option_rows(self) -> list[dict]:
        """Each option: name, default, type and meaning (:mod:`attrkit.method_options`)."""
        from .method_options import option_rows
        return option_rows(self)

    def row(self) -> dict:
        return {"method": self.name, "family": self.family, "gradients": self.gradients,
                "layer": self.layer, "players": self.players, "baseline": self.baseline,
                "sampled": self.sampled, "error": self.error, "torchscript": self.torchscript,
                "summary": self.summary}


def register(name: str, *, family: str, summary: str, **props) -> Callable:
    """Decorator: register ``fn(problem, **options) -> Result`` as method ``name``; ``props`` are the other
    :class:`MethodSpec` fields (``layer=``, ``default_layer=``, ``baseline=``, ``sampled=``, ``error=``, ...).
    The options are read from ``fn``'s signature here, once."""
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"method {name!r} is registered twice")
        props.setdefault("torchscript", family in ("gradient", "game"))
        _REGISTRY[name] = MethodSpec(name=name, fn=fn, family=family, summary=summary, **props)
        return fn
    return deco


def unregister(name: str) -> MethodSpec:
    """Remove method ``name`` from the registry and return its spec (for examples and tests that register
    throwaway methods; the built-in methods come back only by reloading their modules)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"method {name!r} is not registered")
    return _REGISTRY.pop(name)


def validate(method, *, layer=None, noise=None, **options) -> MethodSpec:
    """Check a call of ``method`` with ``options`` (and ``layer=``/``noise=``) without running it: raises the
    ValueError/TypeError ``explain`` would raise for them, else returns the method's :class:`MethodSpec`.
    ``options`` are the method's own (``explain``'s ``**options``), not ``explain``'s arguments (``seed=``, ...).

    >>> import attrkit as ak
    >>> ak.validate("integrated_gradients", steps=16).name
    'integrated_gradients'
    >>> ak.validate("integrated_gradients", step=16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: method 'integrated_gradients' does not take option(s) 'step'; its options are: ...
    """
    spec = method if isinstance(method, MethodSpec) else get(method)
    spec.validate(options, layer=layer, noise=noise)
    return spec


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for mod in METHOD_MODULES:
            importlib.import_module(mod)
        _loaded = True


def get(name: str) -> MethodSpec:
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"method must be a name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        import difflib
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown method {name!r}.{hint} Available methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


class MethodTable(dict):
    """``name -> MethodSpec``; prints as a table (one method: its options too)."""

    def __str__(self) -> str:
        if len(self) == 1 and getattr(self, "by_name", False):
            from .method_options import describe
            return describe(next(iter(self.values())))
        rows = [s.row() for s in self.values()]
        cols = ["method", "family", "gradients", "layer", "players", "sampled", "summary"]
        fmt = lambda v: "yes" if v is True else "no" if v is False else str(v)
        widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols[:-1]}
        lines = ["  ".join(c.ljust(widths.get(c, 0)) for c in cols)]
        for r in rows:
            lines.append("  ".join(fmt(r[c]).ljust(widths.get(c, 0)) for c in cols))
        return "\n".join(lines)


def methods(name: str | None = None) -> MethodTable:
    """The registry: method name -> :class:`MethodSpec` (what it needs and its properties).

    ``name``: a family (``"gradient"``, ``"propagation"``, ``"cam"``, ``"game"``) keeps that family; a method
    name keeps that one method (printing it lists its options, defaults and meaning).
    """
    _ensure_loaded()
    if name is None:
        return MethodTable(sorted(_REGISTRY.items()))
    if not isinstance(name, str):
        raise TypeError(f"methods() takes a family or method name (str), got {type(name).__name__}")
    families = sorted({s.family for s in _REGISTRY.values()})
    key = name.strip().lower().replace("-", "_")
    if key in families:
        return MethodTable((k, v) for k, v in sorted(_REGISTRY.items()) if v.family == key)
    if key in _REGISTRY:
        table = MethodTable({key: _REGISTRY[key]})
        table.by_name = True
        return table
    import difflib
    close = difflib.get_close_matches(key, families + list(_REGISTRY), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"{name!r} is neither a method family nor a method.{hint} Families: {', '.join(families)}; "
                     "`ak.methods()` lists every method")


def markdown() -> str:
    """The registry as a Markdown table (docs/methods.md is generated from it: ``python -m attrkit.registry``)."""
    _ensure_loaded()
    yes = lambda v: "yes" if v else ""
    lines = ["| method | family | at a layer | needs gradients | players | sampled | error figure | TorchScript | "
             "what it computes | reference |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(_REGISTRY.values(), key=lambda s: (s.family, s.name)):
        lines.append(f"| `{s.name}` | {s.family} | {s.layer} | {yes(s.gradients)} | {yes(s.players)} | "
                     f"{yes(s.sampled)} | {f'`{s.error}`' if s.error else ''} | {yes(s.torchscript)} | {s.summary} | "
                     f"{s.reference} |")
    from .method_options import markdown as options_markdown
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.family, s.name))
    return "\n".join(lines) + "\n\n" + options_markdown(specs)


def methods_page() -> str:
    """The whole of docs/methods.md (``python -m attrkit.registry > docs/methods.md``; a test checks it)."""
    header = "# Methods\n\nGenerated from the registry by `python -m attrkit.registry > docs/methods.md`.\n\n"
    return header + markdown()


if __name__ == "__main__":  # pragma: no cover
    import sys
    from attrkit.registry import methods_page as _page   # the package's registry, not this __main__ copy
    sys.stdout.write(_page())
