"""The `Dataset` record every built-in data function returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["Dataset"]


@dataclass
class Dataset:
    """Inputs, targets and what they mean.

    x:             inputs ``[N, ...]`` (tables ``[N, F]``, images ``[N, C, H, W]``), float32.
    y:             targets, ``[N]`` long class labels (classification), ``[N]`` float
                   (regression) or ``[N, 2]`` long (two-object images: the two classes).
    classes:       class names (``None`` for regression).
    feature_names: column names of tabular data (``None`` for images).
    masks:         optional ground-truth object masks, bool ``[N, 1, H, W]`` (one object) or
                   ``[N, len(classes), H, W]`` (one mask per class).
    meta:          anything else (source, scaler statistics, formula, original indices).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] | None = None
    feature_names: list[str] | None = None
    masks: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise TypeError("Dataset.x and Dataset.y must be torch tensors.")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Dataset.x has {self.x.shape[0]} rows but Dataset.y has {self.y.shape[0]}; "
                "they must describe the same samples."
            )
        if self.masks is not None and self.masks.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"Dataset.masks has {self.masks.shape[0]} rows but x has {self.x.shape[0]}."
            )
        self.meta.setdefault("indices", list(range(self.x.shape[0])))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        kind = "classification" if self.is_classification else "regression"
        extra = f", masks={tuple(self.masks.shape)}" if self.masks is not None else ""
        name = self.meta.get("name", "Dataset")
        return (f"Dataset({name!s}: x={tuple(self.x.shape)}, y={tuple(self.y.shape)}, "
                f"{kind}, classes={self.classes}{extra})")

    @property
    def is_classification(self) -> bool:
        """True when `classes` is set (labels are class indices)."""
        return self.classes is not None

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def indices(self) -> list[int]:
        """Indices of these samples in the data set they were taken from."""
        return list(self.meta["indices"])

    # ------------------------------------------------------------- subsetting
    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "Dataset":
        """The samples at `indices` (positions in this data set), metadata kept."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 1:
            raise ValueError("subset() needs a 1-D sequence of integer positions.")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise ValueError(f"subset() positions must lie in [0, {len(self)}).")
        own = self.meta["indices"]
        meta = dict(self.meta)
        meta["indices"] = [int(own[i]) for i in idx.tolist()]
        return replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            masks=None if self.masks is None else self.masks[idx],
            meta=meta,
        )

    def split(self, test_fraction: float = 0.2, seed: int = 0,
              stratify: bool = True) -> tuple["Dataset", "Dataset"]:
        """Random (train, test) split; stratified by class for classification.

        The positions of each part in the parent set are in ``part.meta["indices"]``.
        """
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}.")
        n = len(self)
        rng = np.random.default_rng(seed)
        if stratify and self.is_classification and self.y.ndim == 1:
            labels = self.y.numpy()
            test = []
            for c in np.unique(labels):
                members = np.flatnonzero(labels == c)
                rng.shuffle(members)
                k = int(round(len(members) * test_fraction))
                test.extend(members[:k].tolist())
            test = np.array(sorted(test), dtype=np.int64)
        else:
            perm = rng.permutation(n)
            test = np.sort(perm[: int(round(n * test_fraction))])
        if len(test) == 0 or len(test) == n:
            raise ValueError(
                f"test_fraction={test_fraction} leaves an empty part for {n} samples; "
                "choose a fraction that gives both parts at least one sample."
            )
        is_test = np.zeros(n, dtype=bool)
        is_test[test] = True
        train = np.flatnonzero(~is_test)
        return self.subset(train), self.subset(test)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``."""
        return self.x, self.y
