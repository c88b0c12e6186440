"""Compare the non-timing numbers of two runs of ``make demo`` and ``make bench-quick`` (issue 18: the refactor
keeps every number). A run folder holds ``demo/report.html`` (+ ``summary.json``) and ``bench/<W>/benchmarks.json``::

    T=<tree>; D=/tmp/verify/before; E="PYTHONPATH=$T OMP_NUM_THREADS=1 ATTRKIT_CACHE=/tmp/cache_$(basename $D)"
    env $E python -m attrkit demo --out $D/demo                               # make demo
    cd $T && env $E ATTRKIT_BENCH_NO_EXTERNAL=1 python -m benchmarks W3 --quick --repeats 1 --quiet --out $D/bench/W3
    python tools/compare_runs.py /tmp/verify/before /tmp/verify/after [--ignore 'kernel_shap|n_evals']

Compared: the report's JSON (each map's values and raw layer map as arrays, outputs, probabilities, info, table
cells, notes, figure bytes) and the bench JSON (check errors and tolerances, settings, evaluation/MAC counts, extra,
non-timing targets). Skipped: keys named like times (seconds, ``*_s``, speed, GFLOP/s, memory, time ratios); numbers
with a time unit inside strings are masked. Integers and strings compare exactly, floats within ``--rel`` of the
larger (arrays: max |a - b| <= rel * max |a|). Exit 1 when a difference not matched by ``--ignore`` remains.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np

TIMING = re.compile(r"(^|[\s_(./])(s|ms|min|sec|secs|seconds?|times?|timing|wall|speed(up)?|faster|slower|gflops|"
                    r"gflop/s|per_s|fraction_of_limit|spread|memory|mb|rss|load_average|date)([\s_).]|$)", re.I)
UNIT = re.compile(r"-?\d[\d,.]*(e-?\d+)?\s*(s|ms|min|seconds?|x|×|GFLOP/s|MB|%)(?![a-zA-Z])")
COST = re.compile(r"(^|\.)(evals|grad_evals|forward_macs|backward_macs|flops|n_evals|batch|model evals)$")


def _unpack(p: dict) -> np.ndarray:
    """attrkit.report's packed arrays (float32 byte planes or uint8, zlib, base64)."""
    data = zlib.decompress(base64.b64decode(p["z"]))
    if p["t"] == "u8":
        return np.frombuffer(data, dtype=np.uint8).copy()
    return np.frombuffer(np.frombuffer(data, np.uint8).reshape(4, -1).T.tobytes(), dtype="<f4").copy()


def _flat(obj, path: str, out: dict) -> None:
    """Flatten dicts/lists into ``path -> scalar | ndarray``; packed arrays unpacked; timing keys dropped."""
    if isinstance(obj, dict):
        if set(obj) >= {"z", "n", "t"}:
            out[path] = _unpack(obj)
            return
        for k, v in obj.items():
            if not TIMING.search(str(k)) and not str(k).endswith("_s") and k != "ratio":   # bench: time ratio
                _flat(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flat(v, f"{path}[{i}]", out)
    else:
        out[path] = UNIT.sub("<t>", obj) if isinstance(obj, str) and TIMING.search(obj) else obj


def _unique(key: str, seen: dict) -> str:
    seen[key] = seen.get(key, 0) + 1
    return key if seen[key] == 1 else f"{key}#{seen[key]}"


def demo(folder: Path) -> dict:
    out: dict = {}
    html = (folder / "demo" / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="attrkit-data">(.*?)</script>', html, re.S).group(1))
    for s in data["samples"]:
        _flat(s, f"demo.sample[{s['name']}]", out)
    seen: dict = {}
    for m in data["maps"]:
        key = _unique(f"{data['samples'][m['sample']]['name']}|{m['method']}|{m['target']}|{m['layer']}", seen)
        info = {str(r[0]): r[1] for r in m.pop("info", []) or []}
        _flat(dict(m, info=info), f"demo.map[{key}]", out)
    for t in data["tables"]:
        cols, rows_seen = t["columns"], {}
        for r in t["rows"]:
            n = next((i for i, c in enumerate(r) if isinstance(c, (int, float))), len(r))
            key = _unique("|".join(str(c) for c in r[:min(n, 3)]), rows_seen)
            for c, v in zip(cols, r):
                if not TIMING.search(c):
                    _flat(v, f"demo.table[{t['title']}][{key}].{c}", out)
    for f in data["figures"]:
        if not TIMING.search(f["title"]):
            out[f"demo.figure[{f['title']}]"] = hashlib.sha256(f["src"].encode()).hexdigest()[:12]
    for i, n in enumerate(sorted(UNIT.sub("<t>", n) for n in data["notes"])):
        out[f"demo.note[{i}]"] = n
    f = folder / "demo" / "summary.json"
    s = json.loads(f.read_text()) if f.exists() else {}
    _flat({k: s[k] for k in ("maps", "methods", "models", "best", "skipped") if k in s}, "demo.summary", out)
    return out


def bench(folder: Path) -> dict:
    out: dict = {}
    files = sorted((folder / "bench").glob("**/benchmarks.json"))
    for c in [c for f in files for c in json.loads(f.read_text())["cases"]]:
        p = f"bench[{c['id']}]"
        _flat({k: c.get(k) for k in ("title", "status", "reason", "extra")}, p, out)
        for i, n in enumerate(c.get("notes") or []):
            out[f"{p}.note[{i}]"] = UNIT.sub("<t>", n)
        for t in c.get("targets") or []:
            if not TIMING.search(t["text"]) and not TIMING.search(t.get("detail") or ""):
                _flat({k: t.get(k) for k in ("met", "value", "detail")}, f"{p}.target[{t['text']}]", out)
        for r in c.get("rows") or []:
            _flat({k: v for k, v in r.items() if k != "ratio_of"}, f"{p}.row[{r['label']}]", out)
    return out


def differ(a, b, rel: float) -> str | None:
    """None when equal within the tolerance, else a short description."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape:
            return f"shape {getattr(a, 'shape', a)} vs {getattr(b, 'shape', b)}"
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = float(np.abs(a).max(initial=0.0))
        if (a.dtype == np.uint8 and d.max(initial=0) > 0) or d.max(initial=0) > rel * scale:
            l2 = float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-300))
            return f"max|diff| {d.max():.3g} (scale {scale:.3g}), rel L2 {l2:.3g}, {(d > 0).sum()}/{d.size} differ"
        return None
    if float in (type(a), type(b)) and {type(a), type(b)} <= {int, float}:
        if abs(a - b) <= rel * max(abs(a), abs(b)):
            return None
        return f"{a!r} -> {b!r} (rel {abs(a - b) / max(abs(a), abs(b)):.3g})"
    return None if a == b else f"{a!r} -> {b!r}"


def group(key: str) -> str:
    """A difference's group: the path without sample names, targets and table row keys."""
    key = re.sub(r"demo\.map\[[^|]*\|([^|]*)\|[^|]*\|([^]]*)\]", r"demo.map[\1|\2]", key)
    return re.sub(r"(demo\.(sample|table\[[^]]*\]))\[[^]]*\]", r"\1[*]", re.sub(r"#\d+", "", key))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--rel", type=float, default=1e-5, help="relative tolerance for floats (default 1e-5)")
    p.add_argument("--ignore", default=None, help="regex: differences whose path matches are known (exit 0)")
    p.add_argument("--detail", type=int, default=3, help="differences shown per group (default 3)")
    args = p.parse_args(argv)
    bad = 0
    for name, load, pattern in (("demo", demo, "demo/report.html"), ("bench", bench, "bench/**/benchmarks.json")):
        if not (any(args.before.glob(pattern)) and any(args.after.glob(pattern))):
            print(f"{name}: skipped ({pattern} missing in one run)")
            continue
        b, a = load(args.before), load(args.after)
        diffs = [(k, differ(b[k], a[k], args.rel)) for k in b if k in a]
        diffs = [(k, d) for k, d in diffs if d]
        unit = lambda k: (re.match(r"^(bench\[[^]]*\]|demo\.\w+\[[^]]*\])", k) or [k, k])[1]   # a case, map, table
        for side, this, other in (("BEFORE", b, a), ("AFTER", a, b)):
            present = {unit(k) for k in other}
            diffs += [(k, f"ONLY {side}: " + str(this[k])[:100]) for k in this if k not in other and unit(k) in present]
            diffs += [(u, f"ONLY {side} (all of it)") for u in dict.fromkeys(unit(k) for k in this)
                      if u not in present]
        print(f"{name}: {len(set(a) & set(b)) - sum(k in a and k in b for k, _ in diffs)} identical of "
              f"{len(set(a) | set(b))} compared numbers/strings/arrays, {len(diffs)} differ")
        groups: dict = {}
        for k, d in diffs:
            groups.setdefault(group(k), []).append((k, d, bool(args.ignore and re.search(args.ignore, k))))
        for g, items in groups.items():
            new = sum(not known for _, _, known in items)
            bad += new
            print(f"  {'DIFF' if new else 'known'}{' (cost)' if COST.search(g) else ''} {g[:150]}: {len(items)}"
                  + (f" ({len(items) - new} known)" if new and new < len(items) else ""))
            for k, d, known in sorted(items, key=lambda it: it[2])[:args.detail]:
                print(f"      {'(known) ' if known else ''}{k[:200]}: {d[:300]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
