"""One conversion of Python, NumPy and torch values to what ``json.dumps`` writes (run records, attribution
metadata, ``--json`` output)."""
from __future__ import annotations

import math

import numpy as np
import torch


def jsonable(v, *, nonfinite_null: bool = False):
    """Tensors/arrays to (nested) lists, NumPy scalars to Python numbers, non-finite floats to strings
    (``"nan"``, ``"inf"``; ``None`` with ``nonfinite_null``, as the command line's ``--json`` writes them),
    dict keys to strings; other objects to their ``str``.

    >>> jsonable({"a": torch.tensor([1.0, 2.0]), 3: (np.float32(0.5), float("nan"), None)})
    {'a': [1.0, 2.0], '3': [0.5, 'nan', None]}
    >>> jsonable([float("inf")], nonfinite_null=True)
    [None]
    """
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None if nonfinite_null else str(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x, nonfinite_null=nonfinite_null) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x, nonfinite_null=nonfinite_null) for k, x in v.items()}
    return str(v)
