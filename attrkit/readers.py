"""The one place files become inputs: image folders and files, ``.npz`` / ``.npy`` arrays, tensors.

Both readers of data use it: the command line (``attrkit explain`` / ``evaluate``, :mod:`attrkit.cli_inputs`)
and the sources of whole-data-set runs (:mod:`attrkit.runs.sources`), so an image, a folder or an array file
gives the same tensor through either. Errors are ``ValueError`` with a sentence naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------ images
def image_files(root) -> list[str]:
    """The PNG/JPEG files under the folder ``root`` (searched recursively) as paths relative to it, sorted
    (``"cat/1.png"``, ...: the ids of :class:`attrkit.runs.ImageFolderSource`)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path, mode: str = "RGB", size=None, mean=None, std=None) -> np.ndarray:
    """One image as float32 ``[C, H, W]``: Pillow ``mode`` ("RGB" or "L"), bilinear resize to ``size``
    ((height, width)), scaled to [0, 1], then ``(x - mean) / std`` per channel (arrays or None)."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if mean is not None:
        a = a - np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    if std is not None:
        a = a / np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray(a, dtype=np.float32)


def per_channel(v, channels: int, what: str, default: float) -> np.ndarray:
    """``mean`` / ``std`` as one float32 value per channel (one value is repeated; None gives ``default``)."""
    if v is None:
        return np.full(channels, default, dtype=np.float32)
    a = np.atleast_1d(np.asarray(v, dtype=np.float32))
    if a.size == 1:
        a = np.repeat(a, channels)
    if a.shape != (channels,):
        raise ValueError(f"{what} needs one value or one per channel ({channels}), got {list(a)}")
    return a


def require_pillow():
    try:
        import PIL  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading images needs Pillow; install it with `pip install attrkit[image]`") from err


# ------------------------------------------------------------------------------------------ arrays
def as_numpy(t, what: str) -> np.ndarray:
    """A tensor or array as a NumPy array (a TypeError naming ``what`` for anything else)."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    if isinstance(t, np.ndarray):
        return t
    raise TypeError(f"{what} must be a torch.Tensor or a NumPy array, got {type(t).__name__}")


def npz_arrays(path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file in file order (``allow_pickle=False``: no code runs)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.array(z[k]) for k in z.files}
    except Exception as err:  # noqa: BLE001 - any failure means "not readable"
        raise ValueError(f"could not read {path} as a .npz file: {err}") from None


def read_npz(path):
    """Inputs from a ``.npz``: one array is one batch; several arrays are several inputs — passed by keyword
    when named (``np.savez(f, input_ids=..., pixel_values=...)``), positionally in file order when saved
    unnamed (``np.savez(f, img, tab)``: ``arr_0``, ``arr_1``, ...). Integer arrays stay integers; float64
    becomes float32."""
    arrays = {k: torch.from_numpy(v) for k, v in npz_arrays(path).items()}
    if not arrays:
        raise ValueError(f"{path} holds no arrays")
    for k, v in arrays.items():
        if v.dim() == 0:
            raise ValueError(f"{path}: array {k!r} is a scalar; every input needs a leading sample dimension")
    arrays = {k: v.float() if v.dtype == torch.float64 else v for k, v in arrays.items()}
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if all(k == f"arr_{i}" for i, k in enumerate(arrays)):
        return tuple(arrays.values())
    return arrays
