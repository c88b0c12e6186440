"""Built-in data that need no download: each function returns a `Dataset`.

- images: `digits`, `faces`, `photos` (scikit-learn / scikit-image), and the generated
  `shapes` / `shapes_pairs` with exact object masks;
- tables: `breast_cancer`, `diabetes`, and `synthetic_tabular` with a known formula.
"""

from .dataset import Dataset
from .images import PHOTO_NAMES, digits, faces, photos
from .shapes import SHAPE_CLASSES, shape_mask, shapes, shapes_pairs
from .tabular import (SYNTHETIC_FORMULA, breast_cancer, diabetes, synthetic_function,
                      synthetic_tabular)

__all__ = [
    "Dataset", "digits", "faces", "photos", "PHOTO_NAMES", "shapes", "shapes_pairs",
    "shape_mask", "SHAPE_CLASSES", "breast_cancer", "diabetes", "synthetic_tabular",
    "synthetic_function", "SYNTHETIC_FORMULA",
]
