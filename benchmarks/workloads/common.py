"""Shared pieces of the workloads: attrkit and peer runners, method availability."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile

import torch


def have(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def attrkit_method(name: str) -> str | None:
    """None when attrkit has method ``name`` registered, else why not."""
    import attrkit as ak
    try:
        ak.methods()
    except Exception as e:  # noqa: BLE001 - a half-written method module must not stop the suite
        return f"attrkit's method registry fails to load: {type(e).__name__}: {e}"
    if name in ak.methods():
        return None
    return f"attrkit method {name!r} is not registered yet"


def players(name: str):
    """attrkit's player helper ``name`` (``superpixels``, ``grid``, ``features``): ``ak.<name>``, or from
    ``attrkit.games`` while the top-level export is missing."""
    import attrkit as ak
    if hasattr(ak, name):
        return getattr(ak, name)
    from attrkit import games
    return getattr(games, name)


def explain(model, x, method: str, target, **options):
    """``run()`` for attrkit's ``explain`` with fixed arguments (progress bars off)."""
    import attrkit as ak

    def run():
        return ak.explain(model, x, method=method, target=target, progress=False, **options)
    return run


def values(out) -> torch.Tensor:
    """The attribution tensor of any library's result (attrkit ``Attribution``, tensor, array, tuple)."""
    if hasattr(out, "values") and isinstance(getattr(out, "values"), torch.Tensor):
        return out.values
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    return torch.as_tensor(out)


def default_chunk(model, x, grad: bool = True) -> int:
    """The rows per call attrkit picks by default for this model and input."""
    from attrkit.core.budget import rows_per_chunk
    return rows_per_chunk(model, x, grad=grad)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CROSSCHECK = os.path.join(ROOT, ".venv-crosscheck", "bin", "python")


def crosscheck_results(cfg, key: str, modules: tuple, title: str, dists: tuple = ()) -> list[dict]:
    """Run workload ``key`` in ``.venv-crosscheck`` (torch 2.14.1 + torchvision and the peers ``modules``,
    built by ``make crosscheck``) and return its case results with ids ``<id>-x``; [] where the peers import
    here or that environment does not exist. ``dists``: distributions whose versions the notes give."""
    if all(have(m) for m in modules) or not os.path.exists(CROSSCHECK):
        return []
    probe = subprocess.run([CROSSCHECK, "-c", f"import {', '.join(modules)}, attrkit"], capture_output=True, cwd=ROOT)
    if probe.returncode != 0:
        return [{"id": f"{key}-x", "workload": key, "title": f"{title} (torch 2.14.1)", "status": "not available",
                 "reason": f".venv-crosscheck cannot import {', '.join(modules)} and attrkit",
                 "rows": [], "targets": [], "notes": [], "extra": {}}]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [CROSSCHECK, "-m", "benchmarks", key, "--out", tmp, "--quiet"] + (["--quick"] if cfg.quick else []) \
            + ([] if cfg.memory else ["--no-memory"])
        if cfg.repeats:
            cmd += ["--repeats", str(cfg.repeats)]
        cfg.say(f"  [{key}] running {key} in .venv-crosscheck (torch 2.14.1, {', '.join(modules)})")
        env = dict(os.environ, ATTRKIT_BENCH_NO_EXTERNAL="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800, env=env)
        path = os.path.join(tmp, "benchmarks.json")
        if not os.path.exists(path):
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            return [{"id": f"{key}-x", "workload": key, "title": f"{key} in .venv-crosscheck", "status": "error",
                     "reason": tail, "rows": [], "targets": [], "notes": [], "extra": {}}]
        with open(path) as fh:
            data = json.load(fh)
    out = []
    for case in data["cases"]:
        case["id"] = case["id"] + "-x"
        case["title"] += f" (torch {data['versions'].get('torch')}, .venv-crosscheck)"
        versions = "; ".join(f"{d} {data['versions'].get(d)}" for d in dists)
        case.setdefault("notes", []).append(
            f"run in .venv-crosscheck: limit there {data['limit']['median_gflops']:.1f} GFLOP/s; {versions}")
        out.append(case)
    return out
