"""Pretrained models on the built-in data, shipped inside the package: the same weights everywhere.

``model = pretrained(name)`` reads ``attrkit/zoo_weights/<name>.safetensors`` (the tensors, read
without pickle) and ``<name>.json`` (``config`` to rebuild the model, ``meta``), after checking both
files' SHA-256 against ``manifest.json``; a file whose checksum differs is refused. Nothing is
trained or downloaded on first use. The weights were produced once by the recipes below
(``make zoo`` = ``python -m attrkit.zoo``, one torch thread) and record how in ``meta``.

``model.meta``: "classes", "feature_names", "task", the held-out figure ("test_accuracy", or
"test_r2" and "test_mse" for regression), "train_indices"/"test_indices" (positions in the full data
set), "history", "recipe", "made_with" (torch version, threads, seed). ``dataset(name)`` returns the
held-out split the model was scored on (``dataset(name, "train")`` the training part).

``pretrained(name, retrain=True)`` re-runs the recipe and rewrites the files (and their manifest
entry) in ``directory`` (default: the weights directory). ``$ATTRKIT_ZOO_WEIGHTS`` points every
load at another directory of such files, e.g. a zoo retrained with other seeds or thread counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import data as _data
from .core.files import atomic_write
from .models import MLP, ImageTableNet, SmallCNN, SmallViT, TextTransformer, build
from .models.files import load_safetensors, save_safetensors
from .train import evaluate, fit

__all__ = ["pretrained", "dataset", "names", "weights_dir", "weights_path", "cache_path",
           "cache_dir", "retrain_all", "RECIPES", "WEIGHTS_ENV"]

WEIGHTS_ENV = "ATTRKIT_ZOO_WEIGHTS"
MANIFEST = "manifest.json"
_FORMAT = 2  # bump when the recipe description changes meaning


def _hflip(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal flips (half of the batch, drawn from the torch RNG)."""
    flip = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is made: data, split, architecture (built from `seed`) and training settings."""

    name: str
    data: Callable[..., "_data.Dataset"]
    data_args: dict[str, Any]
    model: Callable[[int], nn.Module]
    fit_args: dict[str, Any]
    band: tuple[float, float]            # held-out accuracy (r2 for regression) any rerun must reach
    test_fraction: float = 0.2
    split_seed: int = 0
    seed: int = 0                        # the model's initialisation and the training order
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (its hash is recorded beside the weights)."""
        return {"name": self.name, "data": self.data.__name__, "data_args": self.data_args,
                "model": self.model(self.seed).config, "fit": {**self.fit_args, "seed": self.seed},
                "test_fraction": self.test_fraction, "split_seed": self.split_seed,
                "augment": None if self.augment is None else self.augment.__name__,
                "format": _FORMAT}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()


def _shapes_vit(seed: int) -> nn.Module:
    """A hybrid ViT (2 blocks on the 8 x 8 feature map of a SmallCNN backbone) whose backbone starts from the
    shipped ``shapes_cnn`` features (fine-tuned with the rest); a plain ViT does not train on 2000 images of the
    shapes data within a CPU budget (35 % held-out accuracy after 30 epochs)."""
    model = SmallViT(3, 5, 64, 8, 48, 2, 4, 96, stem=12, seed=seed)
    model.stem.load_state_dict(pretrained("shapes_cnn", progress=False).features.state_dict())
    return model


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("shapes_cnn", _data.shapes,
               {"n": 2500, "size": 64, "seed": 0, "rotation": 0.0, "radius": (0.12, 0.28)},
               lambda s: SmallCNN(3, 5, 64, width=12, seed=s),
               {"epochs": 10, "lr": 5e-3, "batch_size": 32, "schedule": "onecycle"}, (0.95, 1.0)),
        Recipe("digits_cnn", _data.digits, {"upscale": 2}, lambda s: SmallCNN(1, 10, 16, seed=s),
               {"epochs": 12, "lr": 3e-3, "batch_size": 32}, (0.95, 1.0)),
        Recipe("faces_cnn", _data.faces, {}, lambda s: SmallCNN(1, 2, 25, seed=s),
               {"epochs": 30, "lr": 2e-3, "batch_size": 16}, (0.85, 1.0),
               test_fraction=0.25, augment=_hflip),
        Recipe("breast_cancer_mlp", _data.breast_cancer, {},
               lambda s: MLP(30, [32, 16], "relu", 2, seed=s),
               {"epochs": 20, "lr": 1e-3, "batch_size": 32}, (0.94, 1.0)),
        Recipe("diabetes_mlp", _data.diabetes, {}, lambda s: MLP(10, [32, 16], "relu", 1, seed=s),
               {"epochs": 30, "lr": 1e-3, "batch_size": 32, "weight_decay": 0.1}, (0.35, 0.65)),
        Recipe("text_transformer", _data.text_evidence, {"n": 2000, "seed": 0},
               lambda s: TextTransformer(len(_data.TEXT_VOCAB), 2, 16, 32, 4, 1, 64, seed=s),
               {"epochs": 5, "lr": 3e-3, "batch_size": 32}, (0.95, 1.0)),
        Recipe("shapes_vit", _data.shapes,
               {"n": 2500, "size": 64, "seed": 0, "rotation": 0.0, "radius": (0.12, 0.28)}, _shapes_vit,
               {"epochs": 4, "lr": 1e-3, "batch_size": 32, "schedule": "onecycle"}, (0.95, 1.0)),
        Recipe("image_table_net", _data.image_table, {"n": 3000, "seed": 0},
               lambda s: ImageTableNet(1, 4, 2, seed=s),
               {"epochs": 15, "lr": 3e-3, "batch_size": 32}, (0.95, 1.0)),
    )
}


def names() -> list[str]:
    """Names `pretrained` accepts."""
    return list(RECIPES)


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; choose from {names()}.")
    return RECIPES[name]


# ------------------------------------------------------------------------------------------- files
def weights_dir() -> Path:
    """``$ATTRKIT_ZOO_WEIGHTS`` if set, else the package's ``attrkit/zoo_weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent / "zoo_weights"


def weights_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The safetensors file of zoo model `name` (``attrkit.train.load`` reads it too)."""
    _recipe(name)
    return Path(directory or weights_dir()) / f"{name}.safetensors"


cache_path = weights_path  # the former name (models used to be trained into a cache on first use)


def cache_dir() -> Path:
    """``$ATTRKIT_CACHE`` if set, else ``~/.cache/attrkit`` (other caches; zoo weights ship instead)."""
    env = os.environ.get("ATTRKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attrkit"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        return {"format": _FORMAT, "models": {}}
    return json.loads(path.read_text())


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()), mode=0o644)   # these files are for everyone


def _check(path: Path, expected: str | None, name: str) -> None:
    if not path.is_file():
        raise ValueError(f"zoo model {name!r}: {path} is missing; reinstall attrkit or rebuild the "
                         f"zoo with `make zoo` (or pretrained({name!r}, retrain=True)).")
    got = _sha256(path)
    if got != expected:
        raise ValueError(f"zoo model {name!r}: {path.name} has SHA-256 {got[:16]}... but the manifest "
                         f"records {str(expected)[:16]}...; the file is damaged or was changed. Refusing "
                         "to load it: reinstall attrkit, or rebuild the zoo with `make zoo`.")


def _load(name: str, directory: Path) -> nn.Module:
    entry = _read_manifest(directory)["models"].get(name)
    if entry is None:
        raise ValueError(f"zoo model {name!r} has no entry in {directory / MANIFEST}; rebuild the zoo "
                         f"with `make zoo` (or pretrained({name!r}, retrain=True)).")
    recipe = dataclasses.replace(_recipe(name), seed=int(entry.get("seed", 0)))
    if entry.get("recipe_sha256") != recipe.digest():
        raise ValueError(f"zoo model {name!r}: the weights in {directory} were made by another version "
                         "of its recipe; rebuild them with `make zoo`.")
    wpath, mpath = directory / entry["weights"], directory / entry["meta"]
    _check(wpath, entry.get("sha256"), name)
    _check(mpath, entry.get("meta_sha256"), name)
    return read_model(wpath, mpath)


def read_model(weights: str | os.PathLike, meta: str | os.PathLike | None = None) -> nn.Module:
    """A model from a safetensors file and its JSON (``{"config", "meta"}``; default: same stem)."""
    weights = Path(weights)
    meta = Path(meta) if meta is not None else weights.with_suffix(".json")
    if not meta.is_file():
        raise ValueError(f"{weights} needs {meta.name} beside it (the model's config and meta).")
    record = json.loads(meta.read_text())
    tensors, _ = load_safetensors(weights)
    model = build(record["config"])
    model.load_state_dict(tensors, strict=True)
    model.meta = dict(record.get("meta") or {})
    return model.eval()


# -------------------------------------------------------------------------------------------- data
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
    """The held-out ("test") or training ("train") part that zoo model `name` used, or "all".

    ``text_transformer``: ``.x`` token ids ``[N, 16]``, ``.attention_mask``, ``.rationale`` (the
    evidence tokens), ``.meta["vocab"]``; ``image_table_net``: ``.x`` = ``(images, table)`` for
    ``model(*x)`` and ``.masks`` the square's pixels (see ``attrkit.data.text_evidence`` /
    ``attrkit.data.image_table``).
    """
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}.")
    if split == "all":
        return _full(name).subset(range(len(_full(name))))
    train, test = _split(name)
    return test if split == "test" else train


# -------------------------------------------------------------------------------------- (re)train
def _train(r: Recipe, progress: bool) -> nn.Module:
    train, test = _split(r.name)
    model = r.model(r.seed)
    hist = fit(model, train, None, device="cpu", augment=r.augment, progress=progress,
               seed=r.seed, **r.fit_args)
    full = _full(r.name)
    meta: dict[str, Any] = {
        "name": r.name, "task": "classification" if full.is_classification else "regression",
        "classes": full.classes, "feature_names": full.feature_names,
        "train_indices": train.indices, "test_indices": test.indices,
        "train_seconds": hist.seconds,
        "history": {"train_loss": hist.train_loss, "epochs": hist.epochs},
        "recipe": json.loads(json.dumps(r.describe(), default=str)),
        "made_with": {"torch": torch.__version__, "threads": torch.get_num_threads(), "seed": r.seed,
                      "machine": platform.machine()},
    }
    meta.update({f"test_{k}": v for k, v in evaluate(model, test).items()})
    model.meta = meta
    return model


def _write(model: nn.Module, r: Recipe, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    wpath, mpath = directory / f"{r.name}.safetensors", directory / f"{r.name}.json"
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, wpath)
    _write_text(mpath, json.dumps({"config": model.config, "meta": model.meta}, sort_keys=True) + "\n")
    manifest = _read_manifest(directory)          # one entry per model; the others are kept
    score = {k[5:]: v for k, v in model.meta.items() if k in ("test_accuracy", "test_r2")}
    manifest["models"][r.name] = {"weights": wpath.name, "meta": mpath.name, "sha256": _sha256(wpath),
                                  "meta_sha256": _sha256(mpath), "bytes": wpath.stat().st_size,
                                  "recipe_sha256": r.digest(), "seed": r.seed,
                                  "held_out": score}
    manifest["format"] = _FORMAT
    _write_text(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def pretrained(name: str, *, retrain: bool = False, directory: str | os.PathLike | None = None,
               threads: int | None = 1, seed: int | None = None, progress: bool = True) -> nn.Module:
    """Zoo model `name` (see `names()`) from the shipped, checksummed weights; CPU, eval mode.

    ``retrain=True`` runs the recipe (with `threads` torch threads, 1 by default as for the shipped
    files; `seed` replaces the recipe's initialisation / shuffling seed) and rewrites the model's
    files and manifest entry in `directory` (default: `weights_dir()`). ValueError when a file's
    SHA-256 differs from the manifest or the recipe changed since the files were written.
    """
    r = _recipe(name)
    directory = Path(directory) if directory is not None else weights_dir()
    if not retrain:
        if seed is not None:
            raise ValueError("seed= changes a recipe: pass retrain=True with it.")
        return _load(name, directory)
    if seed is not None:
        r = dataclasses.replace(r, seed=int(seed))
    old = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        model = _train(r, progress)
    finally:
        torch.set_num_threads(old)
    _write(model, r, directory)
    return model


def retrain_all(directory: str | os.PathLike | None = None, only: list[str] | None = None, *,
                threads: int | None = 1, seed: int | None = None, progress: bool = False) -> dict[str, dict]:
    """Retrain every recipe (or those in `only`) into `directory`; ``{name: held-out scores}``."""
    out = {}
    for name in only or names():
        m = pretrained(name, retrain=True, directory=directory, threads=threads, seed=seed,
                       progress=progress)
        out[name] = {k: v for k, v in m.meta.items() if k in ("test_accuracy", "test_r2", "test_mse")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attrkit.zoo",
                                description="Re-run the zoo's recipes and rewrite the shipped weights.")
    p.add_argument("names", nargs="*", help=f"models to rebuild (default all: {', '.join(names())})")
    p.add_argument("--out", default=None, help="directory for the files (default: the package's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    p.add_argument("--seed", type=int, default=None, help="another initialisation/shuffling seed")
    args = p.parse_args(argv)
    for name, score in retrain_all(args.out, args.names or None, threads=args.threads,
                                   seed=args.seed).items():
        band = RECIPES[name].band
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in score.items()) + f" (band {band})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
