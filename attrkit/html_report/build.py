"""``report(items, path)``: one self-contained HTML file to browse attributions.

Everything is inside the file: images as PNG data URIs, map values as base64 float32 arrays (so the page
reads the value under the cursor), the script and the style. It opens from disk with no network. User text
(class, file, feature and method names, table cells) travels as JSON in ``<script type="application/json">``
with ``<``, ``>`` and ``&`` escaped and is shown with ``textContent``, so it can never run as code.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..attribution import Attribution
from ..viz.colors import grey
from ..viz.maps import class_label, view
from .assets import BODY, CSS, HELP, SCRIPT
from .encode import figure_uri, packed, png_uri, script_json

MAX_INFO_NUMBERS = 8


def report(items, path, title: str = "attrkit report", *, class_names=None, sample_names=None,
           feature_names=None, tables=None, figures=None, notes=None, clip: float = 99.5, top: int = 5) -> Path:
    """Write the interactive report to ``path`` (``.html``) and return the path.

    items: an ``Attribution``, a list of them, or ``{label: Attribution}`` (the label replaces the method
        name in the picker, e.g. to tell two settings of one method apart). A list entry may also be a dict
        ``{"attribution": a, "label", "class_names", "sample_names" (one per row of a), "feature_names"}`` to
        mix models with different classes in one report. Samples are matched across attributions by their
        input values, so explaining the same batch with several methods, targets and layers gives one
        sample with all its maps.
    class_names: list or dict for target classes. sample_names: names of the distinct samples in order of
        first appearance (e.g. file names). feature_names: column names for tabular attributions.
    tables: ``{title: rows}`` with rows a list of dicts, a dict of columns, a DataFrame, or an object with
        ``.table()`` (e.g. ``ak.Importance``); shown as tables (metrics, timings).
    figures: ``{title: matplotlib Figure | PNG/JPEG/SVG bytes | file path}``, embedded as images.
    notes: paragraphs of text shown under the tables. clip: the colour scale's percentile.
    """
    entries = _entries(items, class_names, feature_names)
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path.with_suffix(".html")
    if not 0 < clip <= 100:
        raise ValueError(f"clip must be a percentile in (0, 100], got {clip}")
    samples: list[dict] = []
    keys: dict[str, int] = {}
    maps: list[dict] = []
    for e in entries:
        a = e["attribution"]
        for i in range(len(a)):
            key = _sample_key(a, i)
            if key not in keys:
                keys[key] = len(samples)
                name = _name(e["sample_names"], i) if e["sample_names"] is not None else \
                    _name(sample_names, len(samples), "sample")
                samples.append(_sample(a, i, name, e["class_names"], e["feature_names"], top))
            maps.append(_map(a, i, keys[key], e["label"], e["class_names"]))
    data = {
        "title": str(title),
        "subtitle": _subtitle(samples, maps),
        "clip": float(clip),
        "samples": samples,
        "maps": maps,
        "tables": [_table(t, rows) for t, rows in (tables or {}).items()],
        "figures": [{"title": str(t), "src": figure_uri(f)} for t, f in (figures or {}).items()],
        "notes": [str(n) for n in (notes or [])],
    }
    page = _page(str(title), data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _page(title: str, data: dict) -> str:
    t = html.escape(title, quote=True)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
            f"<title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + BODY.format(title=t, help=HELP)
            + f"<script type=\"application/json\" id=\"attrkit-data\">{script_json(data)}</script>\n"
            + f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def _entries(items, class_names, feature_names) -> list[dict]:
    """Items -> ``[{"attribution", "label", "class_names", "sample_names", "feature_names"}]``."""
    if isinstance(items, (Attribution, Mapping)) and not (isinstance(items, Mapping) and "attribution" in items):
        items = [items] if isinstance(items, Attribution) else [{"attribution": v, "label": str(k)}
                                                                 for k, v in items.items()]
    elif isinstance(items, Mapping):
        items = [items]
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"report items must be an Attribution, a list of them or a dict label -> Attribution, "
                        f"got {type(items).__name__}") from None
    out = []
    for it in items:
        e = dict(it) if isinstance(it, Mapping) else {"attribution": it}
        bad = set(e) - {"attribution", "label", "class_names", "sample_names", "feature_names"}
        if bad:
            raise TypeError(f"unknown report item key(s) {sorted(bad)}; use attribution, label, class_names, "
                            f"sample_names, feature_names")
        if not isinstance(e.get("attribution"), Attribution):
            raise TypeError(f"report items must be Attribution objects (or dicts holding one under "
                            f"'attribution'), got {type(e.get('attribution')).__name__}")
        e.setdefault("label", None)
        e.setdefault("class_names", class_names)
        e.setdefault("feature_names", feature_names)
        e.setdefault("sample_names", None)
        a = e["attribution"]
        if e["class_names"] is None:             # the attribution's own (model.meta["classes"])
            e["class_names"] = a.class_names
        if e["feature_names"] is None:
            e["feature_names"] = a.feature_names
        if a.input_names:            # several inputs: one entry per input
            for name in a.input_names:
                label = e["label"] or a.method
                out.append(dict(e, attribution=a.part(name), label=f"{label} [input {name}]"))
            continue
        out.append(e)
    return out


def _sample_key(a: Attribution, i: int) -> str:
    if a.inputs is None:
        return f"attribution {id(a)} sample {i}"
    x = a.inputs[i].detach().cpu().contiguous()
    h = hashlib.sha1(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def _name(names, k: int, prefix: str = "sample") -> str:
    if names is None:
        return f"{prefix} {k}"
    try:
        return str(names[k])
    except (IndexError, KeyError, TypeError):
        return f"{prefix} {k}"


def _sample(a: Attribution, i: int, name: str, class_names, feature_names, top: int) -> dict:
    v = view(a, i, class_names)
    d: dict[str, Any] = {"name": name, "image": None, "grey": None, "features": None, "feature_names": None,
                         "predicted": None, "top": [], "top_kind": "output"}
    if v.kind in ("image", "volume") and v.image is not None:
        d["image"] = png_uri(v.image)
        d["grey"] = png_uri(grey(v.image))
    elif v.kind == "table":
        n = v.map.size
        if v.image is not None:
            d["features"] = [_num(x) for x in np.asarray(v.image).reshape(-1)]
        names = [str(f) for f in feature_names] if feature_names is not None else []
        d["feature_names"] = names if len(names) == n else [f"feature {j}" for j in range(n)]
    if a.outputs is not None:
        o = a.outputs[i].detach().cpu().double().reshape(-1)
        if o.numel() > 1:
            probs = o if (o.min() >= 0 and abs(float(o.sum()) - 1) < 1e-4) else torch.softmax(o, 0)
            order = torch.argsort(probs, descending=True)[:top].tolist()
            d["top"] = [[class_label(c, class_names), float(probs[c])] for c in order]
            d["top_kind"] = "probability"
            d["predicted"] = class_label(int(order[0]), class_names)
        elif o.numel() == 1:
            d["top"] = [["output", float(o[0])]]
    return d


def _map(a: Attribution, i: int, sample: int, label, class_names) -> dict:
    v = view(a, i, class_names)
    m = v.map
    if v.kind == "series":
        m = m.reshape(1, -1)
    d: dict[str, Any] = {"sample": sample, "method": label or a.method, "target": v.target_label,
                         "layer": a.layer or ("input" if v.kind in ("table", "series") else "pixels"), "at_layer": bool(v.at_layer),
                         "over_grey": bool(v.over_grey), "kind": "table" if v.kind == "table"
                         else "image", "output": _num(v.output), "prob": _num(v.probability),
                         "edges": None, "raw": None, "lw": None, "lh": None}
    if v.kind == "table":
        d.update(w=int(m.size), h=1)
    else:
        d.update(h=int(m.shape[0]), w=int(m.shape[1]))
        if v.edges is not None:
            d["edges"] = packed(v.edges.astype(np.uint8), "u8")
        raw = _raw_layer_map(a, i) if v.at_layer else None
        if raw is not None:
            d.update(raw=packed(np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)), lh=int(raw.shape[0]),
                     lw=int(raw.shape[1]))
            if _resized_bilinear(a, raw, m):       # the page enlarges the layer map itself (as torch does)
                d["values"] = None
                d["info"] = _info(a, i)
                return d
    d["values"] = packed(np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0))
    d["info"] = _info(a, i)
    return d


def _raw_layer_map(a: Attribution, i: int) -> np.ndarray | None:
    """The layer map at its own resolution (the channel sum, as ``heatmap()`` reduces channels), for the cursor
    read-out of layer cells; the page also enlarges it to the image (bilinear) instead of storing that."""
    if not a.layer or a.values.dim() != 4:
        return None
    return a.select(i).heatmap(size=tuple(a.values.shape[2:]))[0].detach().cpu().double().numpy()


def _resized_bilinear(a: Attribution, raw: np.ndarray, m: np.ndarray) -> bool:
    """True when the map is the layer map resized bilinearly (align_corners=False), which the page recomputes
    from ``raw`` (float32 maths: equal to about 1e-6 relative)."""
    if raw.shape == m.shape:
        return bool(np.array_equal(raw.astype(np.float32), np.asarray(m, dtype=np.float32)))
    up = torch.nn.functional.interpolate(torch.as_tensor(raw, dtype=torch.float64)[None, None], size=m.shape,
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    return bool(np.allclose(up, m, rtol=1e-5, atol=1e-6 * max(float(np.abs(m).max()), 1e-30)))


def _info(a: Attribution, i: int) -> list:
    rows = []
    for key, val in a.info.items():
        if isinstance(val, (torch.Tensor, np.ndarray)):
            arr = np.asarray(val.detach().cpu() if isinstance(val, torch.Tensor) else val)
            if arr.ndim >= 1 and arr.shape[0] == len(a) and len(a) > 1:
                arr = arr[i]
            if arr.size == 1:
                rows.append([str(key), _num(arr.reshape(-1)[0].item())])
            elif arr.size <= MAX_INFO_NUMBERS:
                rows.append([str(key), ", ".join(_fmt(x) for x in arr.reshape(-1).tolist())])
            else:
                rows.append([str(key), f"array of shape {tuple(arr.shape)}"])
        elif isinstance(val, bool):
            rows.append([str(key), "yes" if val else "no"])
        elif isinstance(val, (int, float, np.integer, np.floating)):
            rows.append([str(key), _num(float(val))])
        elif isinstance(val, (list, tuple)) and len(val) == len(a) and len(a) > 1 and \
                all(isinstance(x, (int, float)) for x in val):
            rows.append([str(key), _num(float(val[i]))])
        else:
            s = str(val)
            rows.append([str(key), s if len(s) <= 200 else s[:197] + "..."])
    return rows


def _num(x):
    if x is None:
        return None
    if isinstance(x, (torch.Tensor, np.ndarray)):
        x = float(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).reshape(-1)[0])
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    return x if math.isfinite(x) else str(x)


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _cell(v):
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, float, np.integer, np.floating)) or (isinstance(v, torch.Tensor) and v.numel() == 1):
        return _num(v)
    if v is None:
        return ""
    return str(v)


def _table(title, rows) -> dict:
    """Rows (list of dicts), columns (dict of lists), a DataFrame, an object with ``.table()``, or a list of
    lists whose first row is the header -> ``{"title", "columns", "rows"}``."""
    note = None
    if hasattr(rows, "table") and callable(rows.table):
        rows = rows.table()
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):        # pandas DataFrame
        rows = rows.to_dict("records")
    if isinstance(rows, Mapping):
        cols = list(rows)
        n = max((len(v) for v in rows.values()), default=0)
        body = [[_cell(rows[c][r]) if r < len(rows[c]) else "" for c in cols] for r in range(n)]
        return {"title": str(title), "columns": [str(c) for c in cols], "rows": body, "note": note}
    rows = list(rows)
    if rows and all(isinstance(r, Mapping) for r in rows):
        cols: list = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        body = [[_cell(r.get(c)) for c in cols] for r in rows]
        return {"title": str(title), "columns": [str(c) for c in cols], "rows": body, "note": note}
    if rows and all(isinstance(r, (list, tuple)) for r in rows):
        return {"title": str(title), "columns": [str(c) for c in rows[0]],
                "rows": [[_cell(x) for x in r] for r in rows[1:]], "note": note}
    if not rows:
        return {"title": str(title), "columns": [], "rows": [], "note": "(empty)"}
    raise TypeError(f"table {title!r}: give rows as a list of dicts, a dict of columns, a DataFrame or a list "
                    f"of lists with a header row, got {type(rows[0]).__name__} rows")


def _subtitle(samples, maps) -> str:
    methods = sorted({m["method"] for m in maps})
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"{len(samples)} sample(s), {len(maps)} map(s) from {len(methods)} method(s) · written {when} "
            f"by attrkit · opens offline")
