"""Data sources for whole-data-set runs: in-memory tensors, a folder of images, a CSV or Parquet table
(:mod:`attrkit.runs.tables`).

A source knows its sample ids, a fingerprint of its content (part of a run's configuration hash) and how to
load a contiguous block of samples. Loading returns the good samples and, for each bad record (a corrupt
image, a malformed row), its id and the reason, so one bad file never stops a run.

Sources are plain picklable objects: the Ray backend ships a source once to each worker, never per batch.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..readers import IMAGE_SUFFIXES, as_numpy, image_files, npz_arrays, per_channel, read_image, require_pillow


@dataclass
class Batch:
    """A loaded block: ``x`` [k, ...] for the good samples, their dataset ``index`` and ``ids``, their
    ``labels`` (or None), and ``errors`` as ``(index, id, reason)`` for the bad ones."""
    x: torch.Tensor | None
    index: np.ndarray
    ids: list[str]
    labels: torch.Tensor | None
    errors: list[tuple[int, str, str]] = field(default_factory=list)


class Source:
    """Base class: subclasses set ``ids`` (one string per sample) and implement ``load`` and ``fingerprint``."""
    kind = "source"
    ids: list[str]
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, start: int, stop: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "n": len(self)}


def _hash_array(h, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))


def _digest(arrays, y, ids, head: bytes = b"") -> str:
    """The content hash of in-memory samples: ``head``, every array, the labels, the ids."""
    h = hashlib.blake2b(digest_size=16)
    if head:
        h.update(head)
    for a in arrays:
        _hash_array(h, a)
    if y is not None:
        _hash_array(h, y)
    h.update("\0".join(ids).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- tensors
class TensorSource(Source):
    """Samples held in memory: ``x`` [N, ...] and optional labels ``y`` [N]; ids are the row numbers."""
    kind = "tensor"

    def __init__(self, x, y=None, ids: Sequence[str] | None = None, classes: Sequence[str] | None = None):
        x = as_numpy(x, "x")
        if x.ndim < 2:
            raise ValueError(f"the data set's inputs must be a batch [N, ...] with N >= 1 samples, got shape "
                             f"{tuple(x.shape)}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        self.x = np.ascontiguousarray(x)
        self.y = None if y is None else as_numpy(y, "y")
        if self.y is not None and self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"the data set has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        self.ids = [str(i) for i in range(self.x.shape[0])] if ids is None else [str(i) for i in ids]
        if len(self.ids) != self.x.shape[0]:
            raise ValueError(f"ids has {len(self.ids)} entries for {self.x.shape[0]} samples")
        self.classes = list(classes) if classes is not None else None
        self._fp = None

    def load(self, start: int, stop: int) -> Batch:
        ok, errors = _finite_rows([self.x[start:stop]], start, self.ids)
        idx = np.arange(start, stop)[ok]
        y = None if self.y is None else torch.from_numpy(np.array(self.y[start:stop][ok]))
        x = torch.from_numpy(np.array(self.x[start:stop][ok])) if len(idx) else None
        return Batch(x, idx, [self.ids[i] for i in idx], y, errors)

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = _digest([self.x], self.y, self.ids)
        return self._fp

    def describe(self) -> dict:
        return {"kind": self.kind, "n": len(self), "shape": list(self.x.shape[1:]), "dtype": self.x.dtype.str}


class InputsSource(Source):
    """Samples of a model with several inputs, held in memory: ``inputs`` a tuple (positional) or dict (keyword)
    of arrays ``[N, ...]`` and optional labels ``y`` [N]. Batches hold the inputs in the same structure; integer
    inputs (token ids) stay integers."""
    kind = "inputs"

    def __init__(self, inputs, y=None, ids: Sequence[str] | None = None, classes: Sequence[str] | None = None):
        if isinstance(inputs, dict):
            if not inputs or any(not isinstance(k, str) for k in inputs):
                raise ValueError("a dict of inputs needs string keys (they are the model's keyword arguments)")
            self.names, arrays = list(inputs), list(inputs.values())
        else:
            self.names, arrays = None, list(inputs)
        if not arrays:
            raise ValueError("the data set has no inputs")
        self.arrays = []
        for i, a in enumerate(arrays):
            a = as_numpy(a, f"input {i}")
            if a.ndim < 1 or a.shape[0] == 0:
                raise ValueError(f"input {i} must be a batch [N, ...] with N >= 1 samples, got {tuple(a.shape)}")
            self.arrays.append(np.ascontiguousarray(a))
        n = {a.shape[0] for a in self.arrays}
        if len(n) != 1:
            raise ValueError(f"the inputs have different numbers of samples {sorted(n)}; each needs the same N")
        n = n.pop()
        self.y = None if y is None else as_numpy(y, "y")
        if self.y is not None and self.y.shape[0] != n:
            raise ValueError(f"the data set has {n} inputs but {self.y.shape[0]} labels")
        self.ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
        if len(self.ids) != n:
            raise ValueError(f"ids has {len(self.ids)} entries for {n} samples")
        self.classes = list(classes) if classes is not None else None
        self._fp = None

    def load(self, start: int, stop: int) -> Batch:
        ok, errors = _finite_rows([a[start:stop] for a in self.arrays], start, self.ids, self.names)
        idx = np.arange(start, stop)[ok]
        if not len(idx):
            return Batch(None, idx, [], None, errors)
        parts = [torch.from_numpy(np.array(a[start:stop][ok])) for a in self.arrays]
        x = dict(zip(self.names, parts)) if self.names is not None else tuple(parts)
        y = None if self.y is None else torch.from_numpy(np.array(self.y[start:stop][ok]))
        return Batch(x, idx, [self.ids[i] for i in idx], y, errors)

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = _digest(self.arrays, self.y, self.ids, head=repr(self.names).encode())
        return self._fp

    def describe(self) -> dict:
        return {"kind": self.kind, "n": len(self), "names": self.names,
                "shapes": [list(a.shape[1:]) for a in self.arrays], "dtypes": [a.dtype.str for a in self.arrays]}


def _finite_rows(arrays, start: int, ids, names=None) -> tuple[np.ndarray, list]:
    """(which samples of a block hold only finite values, ``(index, id, reason)`` for the others): a sample
    with NaN or Inf is a bad record (like a CSV row with one), named and skipped, not the end of the run."""
    n = arrays[0].shape[0]
    ok = np.ones(n, dtype=bool)
    reasons = [[] for _ in range(n)]
    for k, a in enumerate(arrays):
        if not np.issubdtype(a.dtype, np.floating):
            continue
        bad = ~np.isfinite(a.reshape(n, -1))
        counts = bad.sum(1)
        where = "" if len(arrays) == 1 else f"input {names[k] if names else k}: "
        for i in np.flatnonzero(counts):
            ok[i] = False
            nan = int(np.isnan(a.reshape(n, -1)[i]).sum())
            reasons[i].append(f"{where}{nan} NaN and {int(counts[i]) - nan} infinite value(s) of "
                              f"{a[i].size}")
    errors = [(start + i, ids[start + i], "sample holds non-finite values (" + "; ".join(reasons[i]) + ")")
              for i in np.flatnonzero(~ok)]
    return ok, errors


# ------------------------------------------------------------------------------------------ image folder
class ImageFolderSource(Source):
    """PNG/JPEG files under ``root`` (searched recursively, sorted by relative path; the id is that path).

    When every image sits in a first-level sub-folder, the sub-folder names are the classes and give each
    image its label (the torchvision ``ImageFolder`` layout). Preprocessing: ``mode`` ("RGB" or "L"),
    ``size`` (int or (height, width); bilinear resize with Pillow), then scaling to [0, 1] and
    ``(x - mean) / std`` per channel. Without ``size`` all images must share the first image's size; an
    image of another size, or one Pillow cannot decode, is a bad record.
    """
    kind = "image_folder"

    def __init__(self, root, size: int | Sequence[int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, mode: str = "RGB"):
        self.root = Path(root).resolve()          # absolute: workers may run in another directory
        if not self.root.is_dir():
            raise ValueError(f"{root} is not a folder of images")
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        self.mode = mode
        channels = 3 if mode == "RGB" else 1
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
        self.size = size
        self.mean = per_channel(mean, channels, "mean", 0.0)
        self.std = per_channel(std, channels, "std", 1.0)
        if (self.std <= 0).any():
            raise ValueError("std must be positive")
        files = image_files(self.root)
        if not files:
            raise ValueError(f"no PNG or JPEG images found under {root}")
        self.ids = files
        parts = [f.split("/") for f in files]
        if all(len(p) >= 2 for p in parts):
            self.classes = sorted({p[0] for p in parts})
            lookup = {c: i for i, c in enumerate(self.classes)}
            self.labels = np.array([lookup[p[0]] for p in parts], dtype=np.int64)
        else:
            self.classes, self.labels = None, None
        self.shape = None if size is None else (channels, *size)
        self._fp = None

    def _expected_shape(self) -> tuple[int, ...]:
        if self.shape is None:            # the first image that decodes fixes the size
            for rel in self.ids:
                try:
                    self.shape = tuple(self._read(rel).shape)
                    break
                except Exception:  # noqa: BLE001 - a bad file is recorded when its block is loaded
                    continue
            else:
                raise ValueError(f"none of the {len(self.ids)} images under {self.root} could be decoded")
        return self.shape

    def _read(self, rel: str) -> np.ndarray:
        return read_image(self.root / rel, self.mode, self.size, self.mean, self.std)

    def load(self, start: int, stop: int) -> Batch:
        require_pillow()
        shape = self._expected_shape()
        xs, idx, ids, errors = [], [], [], []
        for i in range(start, stop):
            rel = self.ids[i]
            try:
                a = self._read(rel)
            except Exception as err:  # noqa: BLE001 - any decode failure is a bad record, not a crash
                errors.append((i, rel, f"cannot decode image: {type(err).__name__}: {err}"))
                continue
            if tuple(a.shape) != shape:
                errors.append((i, rel, f"image has shape {tuple(a.shape)}, expected {shape}; pass size= "
                                       "to resize every image"))
                continue
            xs.append(a)
            idx.append(i)
            ids.append(rel)
        idx_a = np.array(idx, dtype=np.int64)
        x = torch.from_numpy(np.stack(xs).astype(np.float32)) if xs else None
        y = None if self.labels is None else torch.from_numpy(self.labels[idx_a])
        return Batch(x, idx_a, ids, y, errors)

    def fingerprint(self) -> str:
        """Relative path and content hash of every image, plus the preprocessing. Each file's bytes are hashed
        once; the digest is cached by path, size and modification time (:mod:`attrkit.runs.hashing`), so a
        resumed run costs one ``stat`` per image and an edited image is never mixed into it."""
        if self._fp is None:
            from .hashing import file_digests
            h = hashlib.blake2b(digest_size=16)
            for rel, digest in zip(self.ids, file_digests(self.root / rel for rel in self.ids)):
                h.update(f"{rel}\0{digest}\n".encode())
            h.update(repr((self.size, self.mode, self.mean.tolist(), self.std.tolist())).encode())
            self._fp = h.hexdigest()
        return self._fp

    def describe(self) -> dict:
        return {"kind": self.kind, "n": len(self), "root": str(self.root), "size": self.size, "mode": self.mode,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "classes": self.classes}


# ---------------------------------------------------------------------------------------------- dispatch
from .tables import TABLE_SUFFIXES, TableSource  # noqa: E402  (tables.py imports Source from here)


def as_source(dataset, *, size=None, mean=None, std=None, mode: str = "RGB", columns=None, target_column=None,
              id_column=None) -> Source:
    """Turn what the user passed into a :class:`Source`.

    Accepted: a ``Source``; a tensor / NumPy array ``[N, ...]``; a tuple ``(x, y)``; several inputs as
    ``((x1, x2), y)``, ``({"input_ids": ..., ...}, y)`` or a dict of arrays (:class:`InputsSource`); an attrkit ``Dataset``;
    a ``torch.utils.data.TensorDataset``; a path to a folder of images, a ``.csv`` / ``.parquet`` table or a
    ``.npz`` (arrays ``x`` and optionally ``y``) / ``.npy`` file; or an importable ``"module:function"``
    string naming a zero-argument function that returns one of these (e.g. ``"attrkit.data:digits"``).
    """
    if isinstance(dataset, Source):
        return dataset
    if isinstance(dataset, (torch.Tensor, np.ndarray)):
        return TensorSource(dataset)
    if isinstance(dataset, tuple) and len(dataset) == 2 and isinstance(dataset[0], (tuple, list, dict)):
        return InputsSource(dataset[0], dataset[1])          # (several inputs, labels)
    if isinstance(dataset, dict) and dataset and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in dataset.values()):
        return InputsSource(dataset)                         # keyword inputs, no labels
    if isinstance(dataset, tuple) and len(dataset) == 2:
        return TensorSource(dataset[0], dataset[1])
    if hasattr(dataset, "x") and hasattr(dataset, "y") and isinstance(getattr(dataset, "x"), torch.Tensor):
        y = dataset.y if isinstance(dataset.y, torch.Tensor) else None
        return TensorSource(dataset.x, y, classes=getattr(dataset, "classes", None))
    if isinstance(dataset, torch.utils.data.TensorDataset):
        ts = dataset.tensors
        return TensorSource(ts[0], ts[1] if len(ts) > 1 else None)
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.is_dir():
            return ImageFolderSource(path, size=size, mean=mean, std=std, mode=mode)
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix in TABLE_SUFFIXES:
                return TableSource(path, columns=columns, target=target_column, id_column=id_column)
            if suffix == ".npy":
                return TensorSource(np.load(path, allow_pickle=False))
            if suffix == ".npz":
                z = npz_arrays(path)
                if "x" not in z:
                    raise ValueError(f"{path}: a .npz data set needs an array named 'x' (and optionally 'y')")
                return TensorSource(z["x"], z.get("y"))
            raise ValueError(f"{path}: unsupported data file {suffix!r}; use a folder of images, .csv, .parquet, "
                             ".npz or .npy")
        if isinstance(dataset, str) and ":" in dataset and not os.path.exists(dataset):
            from .factory import import_object
            return as_source(import_object(dataset)(), size=size, mean=mean, std=std, mode=mode, columns=columns,
                             target_column=target_column, id_column=id_column)
        raise ValueError(f"data set {str(dataset)!r} is neither an existing folder/file nor a 'module:function'")
    raise TypeError("dataset must be a tensor, (x, y) tensors, an attrkit Dataset, a TensorDataset, a path to a "
                    f"folder of images / CSV / Parquet file, or a 'module:function' string; got "
                    f"{type(dataset).__name__}")


__all__ = ["Batch", "Source", "TensorSource", "ImageFolderSource", "TableSource", "as_source", "IMAGE_SUFFIXES"]
