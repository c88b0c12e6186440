"""CSV and Parquet tables as a data source of a run: numeric feature columns, an optional label and id column;
a malformed row is a bad record (named, skipped), never the end of the run."""
from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .sources import Batch, Source

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class TableSource(Source):
    """Rows of a CSV or Parquet file: numeric ``columns`` are the features, ``target`` an optional label column,
    ``id_column`` an optional id column (default id: the 0-based data row number).

    A malformed row (wrong number of fields, a value that is not a number, a missing or non-finite value) is
    a bad record. The table is parsed once per process (cached), then blocks are sliced from it.
    """
    kind = "table"

    def __init__(self, path, columns: Sequence[str] | None = None, target: str | None = None,
                 id_column: str | None = None):
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ValueError(f"no table file at {path}")
        suffix = self.path.suffix.lower()
        if suffix not in TABLE_SUFFIXES:
            raise ValueError(f"{path}: a table must be .csv or .parquet, got {suffix!r}")
        self.format = "csv" if suffix == ".csv" else "parquet"
        self.target, self.id_column = target, id_column
        self._columns = None if columns is None else list(columns)
        self._cache = None
        self._fp = None
        data = self._parsed()
        self.ids = data["ids"]
        self.columns = data["columns"]
        self.classes = None

    def _parsed(self) -> dict:
        if self._cache is None:
            self._cache = _read_csv(self) if self.format == "csv" else _read_parquet(self)
        return self._cache

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = None            # each worker parses the file itself; the rows are not shipped
        return state

    def load(self, start: int, stop: int) -> Batch:
        d = self._parsed()
        ok = d["ok"][start:stop]
        idx = np.arange(start, stop)[ok]
        errors = [(int(i), d["ids"][i], d["reasons"][i]) for i in range(start, stop) if not d["ok"][i]]
        x = torch.from_numpy(d["x"][idx]) if len(idx) else None
        y = None if d["y"] is None else torch.from_numpy(d["y"][idx])
        return Batch(x, idx, [d["ids"][i] for i in idx], y, errors)

    def fingerprint(self) -> str:
        """The file's bytes (hashed in 1 MiB blocks) and the column choice."""
        if self._fp is None:
            h = hashlib.blake2b(digest_size=16)
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(repr((self.columns, self.target, self.id_column)).encode())
            self._fp = h.hexdigest()
        return self._fp

    def describe(self) -> dict:
        return {"kind": self.kind, "n": len(self), "path": str(self.path), "format": self.format,
                "columns": self.columns, "target": self.target, "id_column": self.id_column}


def _pick_columns(header: list[str], src: TableSource) -> list[str]:
    for name, what in ((src.target, "target"), (src.id_column, "id_column")):
        if name is not None and name not in header:
            raise ValueError(f"{src.path}: {what} column {name!r} not found; columns are {header}")
    if src._columns is not None:
        missing = [c for c in src._columns if c not in header]
        if missing:
            raise ValueError(f"{src.path}: column(s) {missing} not found; columns are {header}")
        return list(src._columns)
    cols = [c for c in header if c not in (src.target, src.id_column)]
    if not cols:
        raise ValueError(f"{src.path}: no feature columns left after removing the target and id columns")
    return cols


def _number(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError("not finite")
    return v


def _read_csv(src: TableSource) -> dict:
    with open(src.path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{src.path} is empty (no header row)") from None
        cols = _pick_columns(header, src)
        pos = [header.index(c) for c in cols]
        tpos = header.index(src.target) if src.target is not None else None
        ipos = header.index(src.id_column) if src.id_column is not None else None
        rows, ids, ok, reasons, ys = [], [], [], [], []
        for r, fields in enumerate(reader):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue                                          # blank line
            rid = fields[ipos].strip() if ipos is not None and ipos < len(fields) else str(len(ids))
            ids.append(rid)
            reason, vals, yv = None, None, math.nan
            if len(fields) != len(header):
                reason = f"line {reader.line_num}: expected {len(header)} fields, got {len(fields)}"
            else:
                try:
                    vals = [_number(fields[p]) for p in pos]
                    if tpos is not None:
                        yv = _number(fields[tpos])
                except ValueError:
                    bad = next(c for c, p in zip(cols + [src.target], pos + [tpos]) if p is not None
                               and not _is_number(fields[p]))
                    reason = f"line {reader.line_num}: column {bad!r} holds {fields[header.index(bad)]!r}, " \
                             "not a finite number"
            ok.append(reason is None)
            reasons.append(reason)
            rows.append(vals if vals is not None else [0.0] * len(cols))
            ys.append(yv)
    return _finish_table(src, cols, rows, ids, ok, reasons, ys if tpos is not None else None)


def _is_number(text: str) -> bool:
    try:
        _number(text)
        return True
    except ValueError:
        return False


def _read_parquet(src: TableSource) -> dict:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading Parquet needs pyarrow; install it with `pip install attrkit[ray]` "
                          "or `pip install pyarrow`") from err
    table = pq.read_table(src.path)
    header = list(table.column_names)
    cols = _pick_columns(header, src)
    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    mat = np.zeros((n, len(cols)), dtype=np.float64)

    def numeric(name: str) -> np.ndarray:
        col = table.column(name)
        try:
            a = col.to_numpy(zero_copy_only=False).astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{src.path}: column {name!r} of type {col.type} is not numeric") from err
        return a

    checks = [(j, c) for j, c in enumerate(cols)] + ([(None, src.target)] if src.target is not None else [])
    y = None
    for j, c in checks:
        a = numeric(c)
        bad = ~np.isfinite(a)
        for i in np.flatnonzero(bad & ok):
            ok[i] = False
            reasons[i] = f"row {i}: column {c!r} is missing or not a finite number"
        a = np.where(bad, 0.0, a)
        if j is None:
            y = a
        else:
            mat[:, j] = a
    ids = [str(v) for v in table.column(src.id_column).to_pylist()] if src.id_column else \
        [str(i) for i in range(n)]
    return _finish_table(src, cols, mat, ids, ok.tolist(), reasons, y)


def _finish_table(src, cols, rows, ids, ok, reasons, ys) -> dict:
    if not ids:
        raise ValueError(f"{src.path} has no data rows")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{src.path}: the id column {src.id_column!r} holds duplicate ids")
    y = None
    if ys is not None:
        ya = np.asarray(ys, dtype=np.float64)
        fin = ya[np.isfinite(ya)]
        integral = fin.size and np.all(fin == np.round(fin))
        y = np.where(np.isfinite(ya), ya, -1).astype(np.int64) if integral else ya.astype(np.float32)
    return {"x": np.asarray(rows, dtype=np.float32).reshape(len(ids), len(cols)), "ids": ids,
            "ok": np.asarray(ok, dtype=bool), "reasons": reasons, "y": y, "columns": cols}
