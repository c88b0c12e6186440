"""The machine a benchmark ran on: description, library versions, and its float32 matrix-multiply rate.

The rate is "the limit" every workload is stated against: the median GFLOP/s of ``n x n`` float32 matrix
products (``2 n^3`` FLOP each) with torch's default threads, measured in the same run as the workloads.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time

import torch

# Distribution names (pytorch-grad-cam is published as "grad-cam"); versions are read from the installed
# metadata, never by importing (pytorch-grad-cam would import torchvision, which breaks beside torch 2.13).
PEERS = ("captum", "shap", "lime", "grad-cam", "zennit")
LIBRARIES = ("attrkit", "torch", "numpy", "scikit-image", "scikit-learn", "scipy", *PEERS, "ray", "psutil")


def matmul_rate(n: int = 2048, repeats: int = 9, warmup: int = 2) -> dict:
    """Median (and min/max) GFLOP/s of float32 ``[n, n] @ [n, n]`` products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return {"n": n, "repeats": repeats, "median_gflops": statistics.median(rates),
            "min_gflops": min(rates), "max_gflops": max(rates), "threads": torch.get_num_threads()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        return None
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (how busy the machine was: other work skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict:
    """CPU, cores, memory, OS, Python and torch build facts that decide the timings."""
    config = torch.__config__.show()
    blas = "MKL" if "USE_MKL=ON" in config else ("OpenBLAS" if "openblas" in config.lower() else "unknown")
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "blas": blas,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cuda": torch.cuda.is_available(),
        "load_average_at_start": load_average(),
    }


def versions() -> dict:
    """Installed versions of attrkit, torch and the peers (None when not installed)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
