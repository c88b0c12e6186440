"""Encoding for a self-contained page: PNG data URIs (no Pillow needed), base64 float arrays, safe JSON."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from ..core.json_values import jsonable


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of an ``[H, W]`` grey, ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA image (floats in [0, 1] or uint8)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    h, w, c = a.shape
    colour = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(img: np.ndarray) -> str:
    return data_uri(png_bytes(img))


def figure_uri(fig) -> str:
    """A matplotlib figure, PNG/JPEG/SVG bytes, or a path to such a file, as a data URI."""
    if hasattr(fig, "savefig"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, facecolor="white")
        return data_uri(small_png(buf.getvalue()))
    if isinstance(fig, (bytes, bytearray)):
        data = bytes(fig)
    else:
        path = Path(fig)
        if not path.is_file():
            raise ValueError(f"figure {str(fig)!r} is neither a matplotlib figure, image bytes nor an existing file")
        data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data_uri(small_png(data), "image/png")
    if data[:3] == b"\xff\xd8\xff":
        return data_uri(data, "image/jpeg")
    if data.lstrip()[:5] in (b"<?xml", b"<svg "):
        return data_uri(data, "image/svg+xml")
    raise ValueError("a figure must be PNG, JPEG or SVG")


def packed(a, kind: str = "f32") -> dict:
    """An array for the page, lossless and small: little-endian float32 (``"f32"``) or uint8 (``"u8"``) bytes,
    float bytes shuffled into planes (byte 0 of every value, then byte 1, ...: smooth and piecewise-constant maps
    then repeat long runs), zlib-compressed, base64. The page unpacks it with the browser's
    ``DecompressionStream("deflate")``. ``{"z": base64, "n": count, "t": kind}``."""
    if kind == "f32":
        raw = np.ascontiguousarray(np.asarray(a, dtype="<f4")).reshape(-1)
        data = raw.view(np.uint8).reshape(-1, 4).T.tobytes()
    elif kind == "u8":
        raw = np.ascontiguousarray(np.asarray(a, dtype=np.uint8)).reshape(-1)
        data = raw.tobytes()
    else:
        raise ValueError(f"kind must be 'f32' or 'u8', got {kind!r}")
    return {"z": base64.b64encode(zlib.compress(data, 9)).decode("ascii"), "n": int(raw.size), "t": kind}


def unpack(p: dict) -> np.ndarray:
    """The inverse of :func:`packed` (for tests and tools)."""
    data = zlib.decompress(base64.b64decode(p["z"]))
    if p["t"] == "u8":
        return np.frombuffer(data, dtype=np.uint8).copy()
    return np.frombuffer(np.frombuffer(data, dtype=np.uint8).reshape(4, -1).T.tobytes(), dtype="<f4").copy()


def small_png(data: bytes) -> bytes:
    """A figure's PNG re-encoded with a 256-colour palette (plots have few colours) when that is smaller; the
    original otherwise, or when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:                      # pragma: no cover - Pillow comes with matplotlib
        return data
    try:
        im = Image.open(io.BytesIO(data))
        if im.mode not in ("RGB", "RGBA", "P", "L"):
            return data
        q = im.convert("RGB").quantize(256, dither=Image.Dither.NONE)
        out = io.BytesIO()
        q.save(out, "PNG", optimize=True)
    except Exception:                        # noqa: BLE001 - a PNG Pillow cannot read stays as it is
        return data
    return out.getvalue() if out.tell() < len(data) else data


def floats_b64(a) -> str:
    """Little-endian float32 bytes, base64 (read in the page with ``new Float32Array``)."""
    return base64.b64encode(np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes()).decode("ascii")


def bytes_b64(a) -> str:
    return base64.b64encode(np.ascontiguousarray(np.asarray(a, dtype=np.uint8)).tobytes()).decode("ascii")


def script_json(obj) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` and the line separators
    written as ``\\u`` escapes, so no user text can close the script element or start markup."""
    text = json.dumps(jsonable(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text
