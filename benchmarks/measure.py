"""Timing and memory measurement.

Timing: every implementation of a case runs once first (that run is checked and counted, and warms caches
up), then ``repeats`` timed rounds in which the implementations alternate, A B C, C B A, A B C, ... so that
drift in machine load hits every library alike. Reported: median, min and max wall-clock seconds.

Memory: the peak resident set size (RSS) of one run, measured in a fresh Python process per implementation
(``python -m benchmarks.memprobe``): the process builds the case (models, inputs, library objects), reads
its RSS, resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux), runs once, and reports
``VmHWM - RSS before``: the extra memory that run needed at its peak, torch's allocations included
(tracemalloc would not see them). Where the high-water mark cannot be reset, ``ru_maxrss`` of the fresh
process is used instead (an upper bound when set-up peaked higher than the run).
"""
from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kb / 1024.0


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def measure_peak(fn) -> dict:
    """Run ``fn`` once; return RSS before, the peak during and the difference (MB), and the method used."""
    gc.collect()
    before = rss_mb()
    exact = reset_peak()
    fn()
    peak = peak_mb()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
            "extra_peak_mb": round(max(0.0, peak - before), 1),
            "method": "VmHWM reset" if exact else "ru_maxrss"}


def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(runs: dict, repeats: int) -> dict:
    """Time each callable in ``runs`` (label -> fn) ``repeats`` times, alternating the order every round."""
    times = {label: [] for label in runs}
    order = list(runs)
    for r in range(repeats):
        for label in (order if r % 2 == 0 else order[::-1]):
            times[label].append(timed(runs[label]))
    return times


def probe_memory(case_id: str, label: str, quick: bool, timeout: float = 600.0) -> dict:
    """Measure one implementation's peak memory in a fresh process (see the module docstring)."""
    cmd = [sys.executable, "-m", "benchmarks.memprobe", case_id, label] + (["--quick"] if quick else [])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": "memory probe failed: " + " | ".join(tail)}
