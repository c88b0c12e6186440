"""One progress bar per call.

``progress=True`` always shows a bar, ``False`` never, ``None`` (the default everywhere) shows one only on a
terminal and only once the work has run for ``DELAY`` seconds (short calls stay silent).

A public call (``explain``, ``loss_landscape``) opens :func:`call_bar`; the engines inside it (gradient
quadrature, coalition games, perturbation CAMs) ask :func:`bar` for a bar and get a view of the call's one bar:
their totals add to its total and their steps advance it, so a call that runs a game per sample shows one bar
that fills once, never several that restart from 0. Outside a call, :func:`bar` makes a bar of its own.
"""
from __future__ import annotations

import contextvars
import sys
from contextlib import contextmanager

from tqdm.auto import tqdm

DELAY = 2.0          # seconds of work before a bar appears when progress=None (on a terminal)

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("attrkit_call_bar", default=None)


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())


def wanted(progress) -> bool:
    """Whether ``progress`` (True / False / None = on a terminal) asks for a bar."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (a bar only on a terminal), got {progress!r}")
    return on_terminal() if progress is None else progress


class _Off:
    """A bar that shows nothing (progress is off for the whole call)."""
    total = 0
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix_str(self, *_a, **_k) -> None:
        pass


class _Share:
    """A part of the call's bar: ``update`` advances the call's bar; ``close`` leaves it open."""

    def __init__(self, parent, total: int):
        self.parent, self.total, self.n = parent, int(total), 0
        parent.total = (parent.total or 0) + self.total
        parent.refresh()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.parent.update(n)

    def close(self) -> None:
        pass

    def set_postfix_str(self, *a, **k) -> None:
        self.parent.set_postfix_str(*a, **k)


@contextmanager
def call_bar(progress, desc: str, unit: str = "row"):
    """The one bar of a public call (see the module doc). Nested calls join the outer call's bar."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    if wanted(progress):
        b = tqdm(total=0, desc=desc, unit=unit, leave=False, delay=0.0 if progress else DELAY, file=sys.stderr)
    else:
        b = _Off()
    token = _CURRENT.set(b)
    try:
        yield b
    finally:
        _CURRENT.reset(token)
        b.close()


def bar(total: int, desc: str, progress, unit: str = "row", show: bool | None = None):
    """A bar for ``total`` steps of one engine loop: a share of the call's bar inside a call, else a bar of its
    own (shown when ``show``, default :func:`wanted` ``(progress)``)."""
    outer = _CURRENT.get()
    if outer is not None:
        return outer if isinstance(outer, _Off) else _Share(outer, total)
    show = wanted(progress) if show is None else show
    if not show:
        return _Off()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, delay=0.0 if progress else DELAY, file=sys.stderr)
