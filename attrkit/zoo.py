"""Pretrained models on the built-in data, trained on first use and cached on disk.

API: ``model = pretrained(name)`` returns the model (CPU, eval mode) with ``model.meta``:
"classes", "feature_names", "task", the held-out figure ("test_accuracy", or "test_r2" and
"test_mse" for regression), "train_indices"/"test_indices" (positions in the full data set),
"train_seconds", "history" and the "recipe". ``dataset(name)`` returns the held-out split the
model was evaluated on (``dataset(name, "train")`` the training part).

The cache directory is ``$ATTRKIT_CACHE`` or ``~/.cache/attrkit``; files are written to a
temporary name and moved into place with ``os.replace``, so concurrent first use is safe (both
train, the last rename wins, readers never see a partial file). Nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import data as _data
from .models import MLP, SmallCNN
from .train import evaluate, fit, load, save

__all__ = ["pretrained", "dataset", "names", "cache_dir", "cache_path", "RECIPES"]

_FORMAT = 1  # bump to invalidate every cached model


def _hflip(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal flips (half of the batch, drawn from the torch RNG)."""
    flip = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is made: data, split, architecture and training settings."""

    name: str
    data: Callable[[], "_data.Dataset"]
    data_args: dict[str, Any]
    model: Callable[[], nn.Module]
    fit_args: dict[str, Any]
    test_fraction: float = 0.2
    split_seed: int = 0
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (also hashed into the cache file name)."""
        return {"name": self.name, "data": self.data.__name__, "data_args": self.data_args,
                "model": self.model().config, "fit": self.fit_args,
                "test_fraction": self.test_fraction, "split_seed": self.split_seed,
                "augment": None if self.augment is None else self.augment.__name__,
                "format": _FORMAT}


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("shapes_cnn", _data.shapes,
               {"n": 2500, "size": 64, "seed": 0, "rotation": 0.0, "radius": (0.12, 0.28)},
               lambda: SmallCNN(3, 5, 64, width=12, seed=0),
               {"epochs": 10, "lr": 5e-3, "batch_size": 32, "schedule": "onecycle", "seed": 0}),
        Recipe("digits_cnn", _data.digits, {"upscale": 2},
               lambda: SmallCNN(1, 10, 16, seed=0),
               {"epochs": 12, "lr": 3e-3, "batch_size": 32, "seed": 0}),
        Recipe("faces_cnn", _data.faces, {},
               lambda: SmallCNN(1, 2, 25, seed=0),
               {"epochs": 30, "lr": 2e-3, "batch_size": 16, "seed": 0},
               test_fraction=0.25, augment=_hflip),
        Recipe("breast_cancer_mlp", _data.breast_cancer, {},
               lambda: MLP(30, [32, 16], "relu", 2, seed=0),
               {"epochs": 20, "lr": 1e-3, "batch_size": 32, "seed": 0}),
        Recipe("diabetes_mlp", _data.diabetes, {},
               lambda: MLP(10, [32, 16], "relu", 1, seed=0),
               {"epochs": 30, "lr": 1e-3, "batch_size": 32, "weight_decay": 0.1, "seed": 0}),
    )
}


def names() -> list[str]:
    """Names `pretrained` accepts."""
    return list(RECIPES)


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; choose from {names()}.")
    return RECIPES[name]


def cache_dir() -> Path:
    """``$ATTRKIT_CACHE`` if set, else ``~/.cache/attrkit``."""
    env = os.environ.get("ATTRKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attrkit"


def cache_path(name: str) -> Path:
    """File of zoo model `name`; its suffix hashes the recipe, so a changed recipe retrains."""
    desc = json.dumps(_recipe(name).describe(), sort_keys=True, default=str)
    digest = hashlib.sha256(desc.encode()).hexdigest()[:10]
    return cache_dir() / f"{name}-{digest}.pt"


@functools.lru_cache(maxsize=None)
def _full(name: str) -> "_data.Dataset":
    r = _recipe(name)
    kwargs = dict(r.data_args)
    if r.data is _data.shapes:
        kwargs["progress"] = False
    return r.data(**kwargs)


def _split(name: str) -> tuple["_data.Dataset", "_data.Dataset"]:
    r = _recipe(name)
    return _full(name).split(r.test_fraction, seed=r.split_seed)


def dataset(name: str, split: str = "test") -> "_data.Dataset":
    """The held-out ("test") or training ("train") part that zoo model `name` used, or "all"."""
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}.")
    if split == "all":
        return _full(name).subset(range(len(_full(name))))
    train, test = _split(name)
    return test if split == "test" else train


def _train(name: str, progress: bool) -> nn.Module:
    r = _recipe(name)
    train, test = _split(name)
    model = r.model()
    hist = fit(model, train, None, device="cpu", augment=r.augment, progress=progress,
               **r.fit_args)
    scores = evaluate(model, test)
    full = _full(name)
    meta: dict[str, Any] = {
        "name": name,
        "task": "classification" if full.is_classification else "regression",
        "classes": full.classes,
        "feature_names": full.feature_names,
        "train_indices": train.indices,
        "test_indices": test.indices,
        "train_seconds": hist.seconds,
        "history": {"train_loss": hist.train_loss, "epochs": hist.epochs},
        "recipe": json.loads(json.dumps(r.describe(), default=str)),
    }
    meta.update({f"test_{k}": v for k, v in scores.items()})
    model.meta = meta
    return model


def pretrained(name: str, *, retrain: bool = False, progress: bool = True) -> nn.Module:
    """Zoo model `name` (see `names()`), trained on first use and cached; CPU, eval mode.

    ``model.meta`` holds the classes, held-out score and split indices (module docstring).
    ``retrain=True`` ignores the cached file and trains again.
    """
    path = cache_path(name)
    if path.is_file() and not retrain:
        try:
            return load(path)
        except ValueError:
            pass  # unreadable or foreign file: train again and overwrite it
    model = _train(name, progress)
    save(model, path, meta=model.meta)
    return model
