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

    x:             inputs ``[N, ...]`` (tables ``[N, F]``, images ``[N, C, H, W]``), float32; token ids
                   ``[N, L]`` long (text); or a tuple of such tensors, one per input of a model with
                   several inputs (``model(*x)``, e.g. ``(images, tables)``).
    y:             targets, ``[N]`` long class labels (classification), ``[N]`` float
                   (regression) or ``[N, 2]`` long (two-object images: the two classes).
    classes:       class names (``None`` for regression).
    feature_names: column names of tabular data (``None`` for images).
    masks:         optional ground-truth masks: bool ``[N, 1, H, W]`` (one object),
                   ``[N, len(classes), H, W]`` (one mask per class), or ``[N, L]`` for text (the
                   rationale: the tokens that fix the label; also readable as ``.rationale``).
    meta:          anything else (source, scaler statistics, formula, original indices).
    attention_mask: optional ``[N, L]`` bool, True on real tokens and False on padding (text).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] | None = None
    feature_names: list[str] | None = None
    masks: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    attention_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if isinstance(self.x, list):
            self.x = tuple(self.x)
        parts = self.x if isinstance(self.x, tuple) else (self.x,)
        if (not parts or not all(isinstance(t, torch.Tensor) for t in parts)
                or not isinstance(self.y, torch.Tensor)):
            raise TypeError("Dataset.x must be a torch tensor or a tuple of tensors, and Dataset.y "
                            "a torch tensor.")
        for name, t in [("x", p) for p in parts] + [("masks", self.masks),
                                                   ("attention_mask", self.attention_mask)]:
            if t is not None and t.shape[0] != self.y.shape[0]:
                raise ValueError(
                    f"Dataset.{name} has {t.shape[0]} rows but Dataset.y has {self.y.shape[0]}; "
                    "they must describe the same samples."
                )
        self.meta.setdefault("indices", list(range(self.y.shape[0])))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        kind = "classification" if self.is_classification else "regression"
        extra = f", masks={tuple(self.masks.shape)}" if self.masks is not None else ""
        name = self.meta.get("name", "Dataset")
        shape = (tuple(tuple(t.shape) for t in self.x) if isinstance(self.x, tuple)
                 else tuple(self.x.shape))
        return (f"Dataset({name!s}: x={shape}, y={tuple(self.y.shape)}, "
                f"{kind}, classes={self.classes}{extra})")

    @property
    def rationale(self) -> torch.Tensor | None:
        """The ground-truth mask under its text name (``masks``): True on the evidence tokens."""
        return self.masks

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
            x=tuple(t[idx] for t in self.x) if isinstance(self.x, tuple) else self.x[idx],
            y=self.y[idx],
            masks=None if self.masks is None else self.masks[idx],
            attention_mask=None if self.attention_mask is None else self.attention_mask[idx],
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
