"""The GPU check: ``python -m benchmarks.gpu_check`` on a CUDA machine (not part of ``make test``).

1. The device's float32 and bfloat16 matrix-multiply rates (square products, measured here).
2. Parity (:mod:`benchmarks.gpu_parity`): every registered method on the zoo models and on a ResNet-18
   (torchvision's layout, written without torchvision), run on the CPU and on the device with the same seed;
   results must agree (relative L2 1e-3 deterministic, 1e-2 sampled: attrkit draws its random numbers on
   CPU generators, so both devices see the same draws).
3. Timing (:mod:`benchmarks.gpu_timing`): IG, occlusion, exact Shapley, KernelSHAP and the layer trick against
   Captum and shap on the same device, values checked before timing, with ratios and % of the matmul rates.

Prints Markdown tables (and writes them, with the raw numbers as JSON, to ``--out``). TF32 is switched off, so
"fp32" means IEEE float32 on both devices. ``--device cpu --smoke`` runs a tiny version on the CPU (a test
keeps it from rotting); without CUDA and without ``--device cpu`` it says so and exits 2. Exit status 1 when a
check fails. Sized to finish in under 5 minutes on one H100.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

NO_CUDA = 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (with --smoke, for tests)")
    p.add_argument("--smoke", action="store_true", help="tiny models and budgets (seconds, not minutes)")
    p.add_argument("--skip", choices=("parity", "timing"), action="append", default=[], help="leave a part out")
    p.add_argument("--out", help="write the report (Markdown) to this path and the raw numbers to <path>.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device is available here (torch.cuda.is_available() is False): the GPU check needs one. "
              "Run it on a machine with an NVIDIA GPU, or run `python -m benchmarks.gpu_check --device cpu --smoke` "
              "for the small CPU version.", file=sys.stderr)
        return NO_CUDA
    if device.type not in ("cuda", "cpu"):
        print(f"--device must be cuda, cuda:N or cpu, got {args.device!r}", file=sys.stderr)
        return NO_CUDA
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return _check(args, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _check(args, device) -> int:
    from . import gpu_parity, gpu_timing, machine
    t_start = time.perf_counter()
    report = {"device": _device_name(device), "smoke": args.smoke, "machine": machine.describe(),
              "versions": machine.versions()}
    say = lambda msg: print(msg, file=sys.stderr, flush=True)   # noqa: E731 - progress; tables go to stdout
    say(f"GPU check on {report['device']}{' (smoke)' if args.smoke else ''}")
    report["rates_gflops"] = rates = gpu_timing.matmul_rates(device, args.smoke)
    lines = [f"# attrkit GPU check: {report['device']}", "",
             f"torch {torch.__version__}, TF32 off; matmul rates: float32 {rates['fp32']:,.0f} GFLOP/s, "
             f"bfloat16 {rates['bf16']:,.0f} GFLOP/s (square products, median)", ""]
    failed = False
    if "parity" not in args.skip:
        say("parity: every method, CPU against the device")
        rows = gpu_parity.parity(device, args.smoke, say)
        report["parity"] = rows
        failed |= any(r["status"] == "FAIL" for r in rows)
        lines += ["## Parity: CPU against the device, every registered method", "",
                  f"Tolerance: relative L2 {gpu_parity.DETERMINISTIC_TOL:g} (deterministic), "
                  f"{gpu_parity.SAMPLED_TOL:g} (sampled, same seed: random numbers are drawn on CPU generators).",
                  "", gpu_parity.table(rows), ""]
    if "timing" not in args.skip:
        say("timing: attrkit against Captum and shap on the device")
        res = gpu_timing.run(device, args.smoke, rates, say)
        report["timing"] = res
        failed |= any(not r["ok"] for r in res)
        lines += ["## Timing on the device (values checked first)", "",
                  "attrkit / this: attrkit's median time over this row's (below 1: attrkit is faster). Rates count "
                  "convolution and linear multiply-adds only (lower bounds).", "", gpu_timing.table(res), ""]
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    lines.append(f"Wall time {report['wall_s']} s.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
        with open(args.out + ".json", "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    return 1 if failed else 0


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .machine import describe
    return f"CPU: {describe()['cpu']}"


if __name__ == "__main__":
    sys.exit(main())
