"""Shared helpers: seeded initialisation, the config record and the rebuild registry."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

__all__ = ["seeded", "register", "build", "registered", "DEFAULT_SEED"]

DEFAULT_SEED = 0
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` without touching the global CPU RNG.

    ``seed=None`` draws from the global generator as usual.
    """
    if seed is None:
        yield
        return
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model constructor under `name` so that `build` can rebuild it from its config."""
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return deco


def registered() -> list[str]:
    """Names `build` knows."""
    return sorted(_REGISTRY)


def build(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from ``model.config`` (``{"name": ..., **constructor arguments}``)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("build() needs a config dict with a 'name' key, as in model.config.")
    kwargs = dict(config)
    name = kwargs.pop("name")
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; known: {registered()}.")
    return _REGISTRY[name](**kwargs)


def with_config(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """Attach the config and put the model in eval mode."""
    model.config = dict(config)
    return model.eval()
