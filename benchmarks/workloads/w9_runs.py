"""W9: a data-set run, 2,000 built-in 64x64 ``shapes`` images, Integrated Gradients (32 Gauss-Legendre steps)
with ``SmallCNN`` (issue 8), through ``attrkit.runs.bench_throughput``:

- ``ak.explain`` in a loop over blocks of 250 images (the method alone),
- ``ak.run(backend="local")`` end to end (fingerprints, shard writes, manifest),
- ``ak.run(backend="ray", workers=2)`` end to end, Ray's start-up included (and reported alone).

Each row is one run of the whole 2,000-image job (that run is also the checked one); the check: Ray's
attributions equal the local backend's. Target (issue 8): the local backend's overhead beyond the method
stays under 10 %.
"""
from __future__ import annotations

import torch

from ..case import Case, Check, Impl, Target, unavailable
from ..flops import forward_flops
from .common import have

STEPS = 32


def cases(cfg) -> list[Case]:
    try:
        from attrkit.models import SmallCNN
        from attrkit.runs import bench_throughput
    except ImportError as e:
        return [unavailable("W9", "W9", "Data-set run, 2,000 images", f"attrkit.runs is not available: {e}")]
    n = 500 if cfg.quick else 2000
    backends = ["explain", "local"] + (["ray"] if have("ray") and not cfg.quick else [])
    state = {}

    def make(backend):
        def run():
            res = bench_throughput(n=n, steps=STEPS, backends=tuple(["local", backend] if backend == "ray"
                                                                   else [backend]), workers=2)
            state[backend] = res
            res["_seconds"] = res[f"{backend}_seconds"]
            flops = 2 * forward_flops(SmallCNN(in_channels=3, num_classes=5, in_size=64), torch.zeros(1, 3, 64, 64))
            res["_work"] = {"evals": n * (STEPS + 2), "grad_evals": n * STEPS,
                            "flops": n * STEPS * flops + 2 * n * flops // 2}
            return res
        return lambda: run
    impls = [Impl("attrkit", {"explain": "ak.explain loop", "local": "ak.run local",
                              "ray": "ak.run ray (2 workers)"}[b], make(b),
                  {"backend": b, "images": n, "steps": STEPS}, primary=(b == "local")) for b in backends]

    def check(outs):
        res = {}
        for label, out in outs.items():
            diff = out.get("max_abs_diff_local_vs_ray")
            if diff is None:
                res[label] = Check(True, None, None, f"{n} images done")
            else:
                res[label] = Check(diff <= 1e-5, diff, 1e-5, "max |ray - local| over all attributions")
        return res

    def overhead(result):
        rows = {r["label"]: r for r in result.get("rows", [])}
        a, b = rows.get("ak.run local"), rows.get("ak.explain loop")
        if not a or not b or not a.get("median_s") or not b.get("median_s"):
            return None, None, "not measured"
        pct = 100.0 * (a["median_s"] / b["median_s"] - 1.0)
        return pct < 10.0, pct, f"local backend overhead beyond ak.explain: {pct:.1f} % (target < 10 %)"

    def ray_info():
        r = state.get("ray")
        if not r:
            return {}
        return {"ray_startup_s": round(r.get("ray_startup_s", 0.0), 2),
                "ray_images_per_s": round(r.get("ray_images_per_s", 0.0), 1),
                "ray_vs_local": round(r.get("ray_vs_local", 0.0), 3)}

    case = Case("W9", "W9", f"Data-set run, {n} shapes images 64x64, IG {STEPS} steps, SmallCNN", None, impls,
                check=check, targets=[Target("local backend overhead beyond the method < 10 %", overhead)],
                repeats=0, memory=False,
                notes=["one run per row (each a whole data-set job; the checked run is the timed one); the Ray row "
                       "runs the local backend too, to compare results, and its time is Ray's alone",
                       "no per-layer counting: the model is built inside each run (evaluations and FLOPs are computed as images x (steps + 2) forward passes, steps of them with an input-gradient backward)"])
    case.finalize = ray_info
    return [case]
