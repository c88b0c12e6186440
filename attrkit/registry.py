"""One registry of methods: it feeds ``ak.methods()``, ``explain``'s dispatch, the CLI's choices, the docs'
method table and the contract tests that run over every method."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

# Modules whose import registers methods (each family adds its module here).
METHOD_MODULES = (
    "attrkit.gradients.methods",
    "attrkit.gradients.noise",
    "attrkit.propagation.guided",
    "attrkit.propagation.lrp",
    "attrkit.propagation.deeplift",
    "attrkit.propagation.cam",
    "attrkit.propagation.cam_perturb",
    "attrkit.games.estimators",
)

_REGISTRY: dict[str, "MethodSpec"] = {}
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
    ``fn(problem, **options) -> Result`` computes it.
    """
    name: str
    fn: Callable
    family: str                    # "gradient" | "propagation" | "cam" | "game"
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
    options: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"method": self.name, "family": self.family, "gradients": self.gradients,
                "layer": self.layer, "players": self.players, "baseline": self.baseline,
                "sampled": self.sampled, "error": self.error, "torchscript": self.torchscript,
                "summary": self.summary}


def register(name: str, *, family: str, summary: str, **props) -> Callable:
    """Decorator: register ``fn`` as method ``name``."""
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"method {name!r} is registered twice")
        props.setdefault("torchscript", family in ("gradient", "game"))
        _REGISTRY[name] = MethodSpec(name=name, fn=fn, family=family, summary=summary, **props)
        return fn
    return deco


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
    """``name -> MethodSpec``; prints as a table."""

    def __str__(self) -> str:
        rows = [s.row() for s in self.values()]
        cols = ["method", "family", "gradients", "layer", "players", "sampled", "summary"]
        fmt = lambda v: "yes" if v is True else "no" if v is False else str(v)
        widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols[:-1]}
        lines = ["  ".join(c.ljust(widths.get(c, 0)) for c in cols)]
        for r in rows:
            lines.append("  ".join(fmt(r[c]).ljust(widths.get(c, 0)) for c in cols))
        return "\n".join(lines)


def methods(family: str | None = None) -> MethodTable:
    """The registry: method name -> :class:`MethodSpec` (what it needs and its properties)."""
    _ensure_loaded()
    return MethodTable((k, v) for k, v in sorted(_REGISTRY.items()) if family is None or v.family == family)


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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys
    from attrkit.registry import markdown as _markdown   # the package's registry, not this __main__ copy
    header = "# Methods\n\nGenerated from the registry by `python -m attrkit.registry > docs/methods.md`.\n\n"
    sys.stdout.write(header + _markdown())
