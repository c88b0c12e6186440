"""Built-in data that need no download: each function returns a `Dataset`.

- images: `digits`, `faces`, `photos` (scikit-learn / scikit-image), and the generated
  `shapes` / `shapes_pairs` with exact object masks;
- tables: `breast_cancer`, `diabetes`, and `synthetic_tabular` with a known formula;
- text: `text_evidence` (token ids whose label is fixed by planted evidence words, with the rationale);
- several inputs: `image_table` (an image and a table; label = square present XOR key > 0).
"""

from .dataset import Dataset
from .multimodal import IMAGE_TABLE_RULE, image_table
from .images import PHOTO_NAMES, digits, faces, photos
from .shapes import SHAPE_CLASSES, shape_mask, shapes, shapes_pairs
from .tabular import (SYNTHETIC_FORMULA, breast_cancer, diabetes, synthetic_function,
                      synthetic_tabular)
from .text import TEXT_EVIDENCE, TEXT_VOCAB, text_evidence

__all__ = [
    "Dataset", "digits", "faces", "photos", "PHOTO_NAMES", "shapes", "shapes_pairs",
    "shape_mask", "SHAPE_CLASSES", "breast_cancer", "diabetes", "synthetic_tabular",
    "synthetic_function", "SYNTHETIC_FORMULA", "text_evidence", "TEXT_VOCAB", "TEXT_EVIDENCE",
    "image_table", "IMAGE_TABLE_RULE",
]
