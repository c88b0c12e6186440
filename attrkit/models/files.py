"""Weights in the safetensors format, read and written without pickle (and without the package).

Layout (https://huggingface.co/docs/safetensors): an unsigned 64-bit little-endian header length
``n``, ``n`` bytes of JSON ``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets":
[begin, end]}}`` (padded with spaces to a multiple of 8), then the tensors' little-endian bytes,
row-major, at their offsets from the end of the header. Files written here are read by
``safetensors.torch.load_file`` and the other way round.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..core.files import atomic_write

__all__ = ["save_safetensors", "load_safetensors"]

_DTYPES = {  # safetensors name -> (torch dtype, little-endian numpy dtype or None for bf16)
    "F64": (torch.float64, "<f8"), "F32": (torch.float32, "<f4"), "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, None), "I64": (torch.int64, "<i8"), "I32": (torch.int32, "<i4"),
    "I16": (torch.int16, "<i2"), "I8": (torch.int8, "i1"), "U8": (torch.uint8, "u1"),
    "BOOL": (torch.bool, "?"),
}
_NAMES = {dt: name for name, (dt, _) in _DTYPES.items()}
_MAX_HEADER = 100_000_000


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(_DTYPES[_NAMES[t.dtype]][1]).tobytes()


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (names sorted) and string `metadata` to `path` atomically (temp file, rename)."""
    header: dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map strings to strings.")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor) or t.dtype not in _NAMES:
            raise TypeError(f"{name!r}: safetensors holds tensors of {sorted(_DTYPES)}, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}.")
        data = _bytes(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: fh.write(struct.pack("<Q", len(text)) + text + b"".join(chunks)),
                        mode=0o644)                # weight files are for everyone


def load_safetensors(source: str | os.PathLike | bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` from a safetensors file (or its bytes); ValueError if malformed."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    where = "the data" if isinstance(source, bytes) else str(source)
    if len(raw) < 8:
        raise ValueError(f"{where} is not a safetensors file (shorter than its 8-byte header length).")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise ValueError(f"{where} is not a safetensors file (header length {n} exceeds the file).")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is not a safetensors file (its header is not JSON: {err}).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where} is not a safetensors file (its header is not a JSON object).")
    body = raw[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    out = {}
    for name, spec in header.items():
        try:
            torch_dtype, np_dtype = _DTYPES[spec["dtype"]]
            shape = [int(s) for s in spec["shape"]]
            begin, end = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: tensor {name!r} has a malformed entry {spec!r}.") from None
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * torch.empty(
                (), dtype=torch_dtype).element_size():
            raise ValueError(f"{where}: tensor {name!r} has offsets {begin}..{end} that do not fit "
                             f"its shape {shape} and dtype {spec['dtype']} inside the file.")
        chunk = body[begin:end]
        if np_dtype is None:
            arr = np.frombuffer(chunk, dtype="<i2").astype(np.int16)
            t = torch.from_numpy(arr.copy()).view(torch.bfloat16)
        else:
            arr = np.frombuffer(chunk, dtype=np_dtype).astype(np_dtype.lstrip("<"), copy=True)
            t = torch.from_numpy(arr).to(torch_dtype)
        out[name] = t.reshape(shape)
    return out, dict(metadata)
