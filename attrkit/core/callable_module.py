"""A module that can also be called as its main function.

``ak.report`` and ``ak.summary`` are functions exported by the package, but ``attrkit.report`` and
``attrkit.summary`` are also modules: once anything runs ``import attrkit.report``, Python sets the package
attribute to the module and ``ak.report(...)`` would fail. Making the module callable keeps both spellings
working whatever was imported first.
"""
from __future__ import annotations

import sys
import types


def make_callable(module_name: str, fn) -> None:
    """Let ``sys.modules[module_name](...)`` call ``fn(...)``."""
    module = sys.modules[module_name]

    class _Callable(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    _Callable.__doc__ = module.__doc__
    module.__class__ = _Callable
