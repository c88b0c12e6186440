"""The options every game estimator shares (players, masker, baseline, all_classes, spread, head_only, local) as
one object, and ``game_method``: register an estimator written as ``fn(problem, game_options, **own)`` under its
flat public signature (``ak.explain(..., players=, masker=, n_samples=)``), with the shared options documented
once here.

>>> from attrkit.games.options import GameOptions
>>> GameOptions(masker="mean").with_(spread="share").share
True
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, replace
from typing import Any

from ..registry import register

SPREADS = ("value", "share", "paint")   # "paint" is the older name of "value"

SHARED_DOC = """
    Options of every game estimator (:class:`attrkit.games.options.GameOptions`): ``players`` (labels, a helper's
    result such as ``ak.grid(x, 4)``, or a name), ``masker`` / ``baseline`` (what an absent player becomes),
    ``all_classes`` (values for every output from the same forward passes), ``head_only`` (at a layer: run only
    the part of the network after it; None falls back to a replacing hook when the model cannot be split).
    ``local``: image games on CNNs run the convolutional prefix once per local pattern of players instead of once
    per coalition (exact; ``None`` decides by cost, ``False`` runs the whole network per coalition, ``True``
    insists; :mod:`attrkit.games.local`).
    ``spread``: "value" (default) paints every element with its player's value, so a map reads in the player's
    units; "share" gives each element value / player size, so ``values.sum()`` is the sum of the player values.
"""


@dataclass(frozen=True)
class GameOptions:
    """How a game is built (players, masker/baseline, all classes, layer split, receptive-field plan) and how its
    player values are put on the input (``spread``)."""
    players: Any = None
    masker: Any = None
    baseline: Any = None
    all_classes: bool = False
    spread: str = "value"
    head_only: bool | None = None
    local: bool | None = None

    def __post_init__(self):
        if self.spread not in SPREADS:
            raise ValueError(f"spread must be 'value' (each element shows its player's value, the default) or "
                             f"'share' (each element gets its player's value / player size, so values sum to the "
                             f"player values), got {self.spread!r}")
        if self.local not in (None, True, False):
            raise ValueError(f"local must be None (automatic), True or False, got {self.local!r}")

    @property
    def share(self) -> bool:
        """``spread="share"``: each element gets its player's value / the player's element count."""
        return self.spread == "share"

    def with_(self, **changes) -> "GameOptions":
        return replace(self, **changes)


_NAMES = tuple(f.name for f in fields(GameOptions))
_DEFAULTS = {f.name: f.default for f in fields(GameOptions)}
_TYPES = {f.name: inspect.Parameter.empty if f.type == "Any" else f.type for f in fields(GameOptions)}
FIRST = ("players", "masker", "baseline")               # before the estimator's own options
LAST = ("all_classes", "spread", "head_only", "local")  # after them


def game_method(name: str, *, options=_NAMES, **spec):
    """Register ``fn(problem, game: GameOptions, **own)`` as the game estimator ``name``, taking ``options`` (a
    subset of :class:`GameOptions`' fields) besides its own keyword options: the public signature is
    ``(problem, players, masker, baseline, <own options>, all_classes, spread, head_only, local)`` restricted to
    ``options``, and the shared options' paragraph is appended to the docstring."""
    unknown = set(options) - set(_NAMES)
    if unknown:
        raise ValueError(f"unknown game options {sorted(unknown)}; GameOptions has {_NAMES}")

    def wrap(fn):
        own = list(inspect.signature(fn).parameters.values())[2:]
        shared = lambda names: [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_DEFAULTS[k],
                                                  annotation=_TYPES[k]) for k in names if k in options]
        problem = inspect.Parameter("problem", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = [problem] + shared(FIRST) + own + shared(LAST)
        signature = inspect.Signature(params, return_annotation=inspect.signature(fn).return_annotation)

        def method(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            given = dict(bound.arguments)
            problem_ = given.pop("problem")
            game = GameOptions(**{k: given.pop(k) for k in list(given) if k in _NAMES})
            return fn(problem_, game, **given)
        method.__name__, method.__qualname__, method.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        method.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + SHARED_DOC
        method.__signature__ = signature
        method.__wrapped_estimator__ = fn
        return register(name, family="game", gradients=False, **spec)(method)
    return wrap
