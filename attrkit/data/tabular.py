"""Tabular data: two scikit-learn sets and a synthetic set whose function is known."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset

__all__ = ["breast_cancer", "diabetes", "synthetic_tabular", "SYNTHETIC_FORMULA",
           "synthetic_function"]


def _standardise(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (a - mean) / std, mean, std


def _sklearn_datasets():
    try:
        import sklearn.datasets as skd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("this data set needs scikit-learn; `pip install attrkit[data]`.") from err
    return skd


def breast_cancer() -> Dataset:
    """Wisconsin breast cancer (569 x 30), standardised; classes 0 = malignant, 1 = benign.

    ``meta["mean"]``, ``meta["std"]``: the scaler statistics (x = (raw - mean) / std),
    computed over all 569 rows.
    """
    bunch = _sklearn_datasets().load_breast_cancer()
    z, mean, std = _standardise(bunch.data.astype(np.float64))
    return Dataset(
        torch.from_numpy(z.astype(np.float32)),
        torch.from_numpy(bunch.target.astype(np.int64)),
        [str(c) for c in bunch.target_names],
        [str(f) for f in bunch.feature_names],
        None,
        {"name": "breast_cancer", "source": "sklearn.datasets.load_breast_cancer",
         "mean": torch.from_numpy(mean).float(), "std": torch.from_numpy(std).float()},
    )


def diabetes() -> Dataset:
    """Diabetes progression (442 x 10), regression; features and target standardised.

    ``meta``: "mean"/"std" of the raw features, "y_mean"/"y_std" of the raw target
    (raw target = y * y_std + y_mean).
    """
    bunch = _sklearn_datasets().load_diabetes(scaled=False)
    z, mean, std = _standardise(bunch.data.astype(np.float64))
    t = bunch.target.astype(np.float64)
    y_mean, y_std = float(t.mean()), float(t.std())
    return Dataset(
        torch.from_numpy(z.astype(np.float32)),
        torch.from_numpy(((t - y_mean) / y_std).astype(np.float32)),
        None,
        [str(f) for f in bunch.feature_names],
        None,
        {"name": "diabetes", "source": "sklearn.datasets.load_diabetes",
         "mean": torch.from_numpy(mean).float(), "std": torch.from_numpy(std).float(),
         "y_mean": y_mean, "y_std": y_std},
    )


SYNTHETIC_FEATURES = ["sym_a", "sym_b", "inter_a", "inter_b", "nonlinear", "dummy"]
SYNTHETIC_FORMULA = "f(x) = 1.5*sym_a + 1.5*sym_b + inter_a*inter_b + sin(2*nonlinear) + 0*dummy"


def synthetic_function(x: torch.Tensor) -> torch.Tensor:
    """The ground truth of `synthetic_tabular`: ``[N, 6] -> [N]`` (see ``SYNTHETIC_FORMULA``).

    sym_a and sym_b are symmetric (swapping them leaves f unchanged), inter_a * inter_b is a
    pure interaction, sin(2 * nonlinear) a non-linearity and dummy has no influence.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != len(SYNTHETIC_FEATURES):
        raise ValueError(
            f"synthetic_function expects a tensor [N, {len(SYNTHETIC_FEATURES)}], "
            f"got {getattr(x, 'shape', type(x))}."
        )
    return (1.5 * x[:, 0] + 1.5 * x[:, 1] + x[:, 2] * x[:, 3] + torch.sin(2.0 * x[:, 4])
            + 0.0 * x[:, 5])


def synthetic_tabular(n: int = 1000, seed: int = 0, noise: float = 0.0) -> Dataset:
    """`n` rows of 6 features uniform in [-1, 1] and y = f(x) (+ Gaussian noise of std `noise`).

    ``meta["formula"]`` is the callable ground truth (``synthetic_function``),
    ``meta["formula_str"]`` its text, and ``meta["dummy"]``, ``meta["symmetric"]``,
    ``meta["interaction"]``, ``meta["nonlinear"]`` the column indices with those roles.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}.")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.rand(n, len(SYNTHETIC_FEATURES), generator=g) * 2.0 - 1.0
    y = synthetic_function(x)
    if noise > 0:
        y = y + noise * torch.randn(n, generator=g)
    return Dataset(
        x, y, None, list(SYNTHETIC_FEATURES), None,
        {"name": "synthetic_tabular", "seed": seed, "noise": noise,
         "formula": synthetic_function, "formula_str": SYNTHETIC_FORMULA,
         "dummy": [5], "symmetric": [(0, 1)], "interaction": [(2, 3)], "nonlinear": [4]},
    )
