"""Throughput of data-set runs: ``ak.explain`` in a loop vs the local backend vs Ray (for ``make bench``)."""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time


def bench_throughput(n: int = 2000, size: int = 64, steps: int = 32, shard_size: int = 250, workers: int = 2,
                     backends=("explain", "local", "ray"), repeats: int = 1, progress: bool = False,
                     torch_threads: int | None = None) -> dict:
    """Images per second for Integrated Gradients (``steps`` Gauss-Legendre points) on ``n`` built-in
    ``shapes`` images (``size`` x ``size`` RGB) with ``SmallCNN``:

    - ``explain``: ``ak.explain`` called on the same tensors in blocks of ``shard_size`` (the method alone);
    - ``local``: ``ak.run(backend="local")`` end to end (model fingerprint, data hash, shard writes);
    - ``ray``: ``ak.run(backend="ray", workers=workers)`` end to end, including Ray's start-up, which is
      also reported alone (``ray_startup_s``: until the first shard is back, minus its compute time).

    ``local_overhead_pct`` = local time / explain time - 1 (the store's per-image cost beyond the method; an
    A/B comparison, noisy on a busy machine); ``local_overhead_accounted_pct`` = (local run time - the time
    spent inside its ``explain`` calls) / that time, measured within the same run (robust to load changes).
    With ``repeats`` > 1 the explain and local timings are the best of that many (interleaved).
    ``local_overhead_cpu_pct``: the same comparison in CPU time of this process (robust on a busy machine).
    ``explain_cpu_ms_per_image``: CPU time of the explain loop per image (with one thread, the cost per core
    for capacity estimates). ``torch_threads`` sets PyTorch's threads in this process for the explain and local timings (default:
    as configured; Ray actors always use one thread each, one CPU per actor).
    """
    import torch

    from ..api import explain
    from ..data import shapes
    from ..models import SmallCNN
    from .api import run

    threads_before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    x = shapes(n=n, size=size, seed=0, progress=False).x
    factory = functools.partial(SmallCNN, in_channels=3, num_classes=5, in_size=size)
    res: dict = {"n": n, "size": size, "steps": steps, "shard_size": shard_size, "method": "integrated_gradients",
                 "model": "SmallCNN(width=8)", "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    tmp = tempfile.mkdtemp(prefix="attrkit-bench-")
    try:
        times: dict[str, list[float]] = {"explain": [], "local": []}
        local_vals = None
        accounted: list[float] = []
        cpu: list[float] = []
        local_cpu: list[float] = []
        explain(factory(), x[:2], method="integrated_gradients", steps=steps, progress=False)   # warm-up
        for r in range(repeats):
            if "explain" in backends:
                model = factory()
                t0, c0 = time.perf_counter(), time.process_time()
                for i in range(0, n, shard_size):
                    explain(model, x[i:i + shard_size], method="integrated_gradients", steps=steps, progress=False)
                times["explain"].append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            if "local" in backends:
                out = os.path.join(tmp, f"local{r}")
                t0, c0 = time.perf_counter(), time.process_time()
                result = run(factory, x, out=out, shard_size=shard_size, steps=steps, progress=progress)
                times["local"].append(time.perf_counter() - t0)
                local_cpu.append(time.process_time() - c0)
                local_vals = result
                inside = sum(float(sh.info["seconds"]) for sh in result.iter_shards())
                accounted.append((times["local"][-1] - inside) / inside)
        for k, ts in times.items():
            if ts:
                res[f"{k}_seconds"] = min(ts)
                res[f"{k}_images_per_s"] = n / min(ts)
        if cpu:    # CPU time per image: what a core must spend, independent of how busy the machine is
            res["explain_cpu_ms_per_image"] = 1000.0 * min(cpu) / n
        if local_cpu:
            res["local_cpu_ms_per_image"] = 1000.0 * min(local_cpu) / n
        if cpu and local_cpu:
            res["local_overhead_cpu_pct"] = 100.0 * (min(local_cpu) / min(cpu) - 1.0)
        if accounted:
            res["local_overhead_accounted_pct"] = 100.0 * min(accounted)
            res["local_overhead_ms_per_image"] = 1000.0 * min(accounted) * min(times["local"]) / \
                (1 + min(accounted)) / n
        if times["explain"] and times["local"]:
            res["local_overhead_pct"] = 100.0 * (min(times["local"]) / min(times["explain"]) - 1.0)
        if "ray" in backends:
            out = os.path.join(tmp, "ray")
            t0 = time.perf_counter()
            result = run(factory, x, out=out, backend="ray", workers=workers, shard_size=shard_size, steps=steps,
                         progress=progress)
            t = time.perf_counter() - t0
            start = result.stats.get("ray_startup_s") or 0.0
            res.update(ray_workers=result.stats["workers"], ray_seconds=t, ray_images_per_s=n / t,
                       ray_startup_s=start, ray_images_per_s_after_startup=n / max(t - start, 1e-9))
            if "local_images_per_s" in res:
                res["ray_vs_local"] = res["ray_images_per_s"] / res["local_images_per_s"]
                res["ray_vs_local_after_startup"] = res["ray_images_per_s_after_startup"] / res["local_images_per_s"]
            if local_vals is not None:
                d = (local_vals.values() - result.values()).abs().flatten(1).max(1).values
                res["max_abs_diff_local_vs_ray"] = float(d.max())
                res["samples_differing_local_vs_ray"] = int((d > 0).sum())
                res["targets_differing_local_vs_ray"] = int((local_vals.targets != result.targets).sum())
    finally:
        torch.set_num_threads(threads_before)
        shutil.rmtree(tmp, ignore_errors=True)
    return res


if __name__ == "__main__":  # pragma: no cover - manual use: python -m attrkit.runs.bench n=2000 backends=local,ray
    import json
    import sys
    kw = {k: (tuple(v.split(",")) if k == "backends" else int(v)) for k, v in (a.split("=") for a in sys.argv[1:])}
    print(json.dumps(bench_throughput(**kw), indent=2))
