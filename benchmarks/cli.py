"""``python -m benchmarks [NAMES...] [--quick]``: run the workloads, write the JSON and the Markdown report."""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="attrkit against Captum, SHAP, LIME and pytorch-grad-cam, side by side, "
                                            "with the machine's matrix-multiply rate as the limit.")
    p.add_argument("names", nargs="*", help="workloads (W1 ... W9) or case ids (W1a); default: all")
    p.add_argument("--quick", action="store_true", help="fewer runs and smaller searches (under 5 minutes)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per implementation (default 5, quick 3)")
    p.add_argument("--memory", dest="memory", action="store_true", default=None,
                   help="measure peak memory in fresh processes (default in the full run)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory probes "
                   "(default with --quick)")
    p.add_argument("--out", default=None,
                   help="output folder (default: docs/ for the whole suite, bench-out/ for a subset)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .workloads import WORKLOADS, build, check_names
    if args.list:
        for k, (_, title) in WORKLOADS.items():
            print(f"{k}  {title}")
        return 0
    try:
        check_names(args.names)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    if args.repeats is not None and args.repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 2
    import torch
    from . import machine
    from .report import results_table, targets_table, write
    from .runner import Config, run_case

    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.memory is None:
        args.memory = not args.quick
    cfg = Config(quick=args.quick, repeats=args.repeats, memory=args.memory, progress=not args.quiet)
    t0 = time.perf_counter()
    cfg.say("machine: measuring the float32 matmul rate (the limit)")
    desc, versions = machine.describe(), machine.versions()
    lim_start = machine.matmul_rate()
    cfg.limit_gflops = lim_start["median_gflops"]
    cfg.say(f"limit: {cfg.limit_gflops:.1f} GFLOP/s")
    try:
        cases = build(args.names, cfg)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    results = []
    for case in cases:
        cfg.say(f"[{case.id}] {case.title}")
        res = run_case(case, cfg)
        results.append(res)
        cfg.say(f"[{case.id}] {res['status']} ({res.get('wall_s', 0):.0f} s)"
                + (f": {res.get('reason')}" if res.get("reason") else ""))
    if not os.environ.get("ATTRKIT_BENCH_NO_EXTERNAL"):
        from .workloads import externals
        results.extend(externals(args.names, cfg))
    lim_end = machine.matmul_rate()
    limit = statistics.median([lim_start["median_gflops"], lim_end["median_gflops"]])
    for res in results:   # restate every fraction against the run's limit (median of start and end)
        for row in res.get("rows", []):
            if row.get("gflops_per_s") is not None:
                row["fraction_of_limit"] = row["gflops_per_s"] / limit
    repeats_text = str(args.repeats) if args.repeats else (
        "2 (quick mode)" if args.quick else
        f"5 (3 on the chunk-size sweep and where one round of a case takes over {cfg.long_round_s:.0f} s, so that "
        "the suite fits in 30 minutes on 2 cores)")
    repeats_text += "; W9 rows are one run each (a whole data-set job)"
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "config": {"quick": args.quick, "repeats": args.repeats, "repeats_text": repeats_text,
                      "memory": args.memory, "names": args.names},
           "machine": desc, "load_average_at_end": machine.load_average(), "versions": versions,
           "limit": {"start": lim_start, "end": lim_end, "median_gflops": limit},
           "cases": results, "wall_s": round(time.perf_counter() - t0, 1)}
    out_dir = args.out or (os.path.join(ROOT, "docs") if not args.names else os.path.join(ROOT, "bench-out"))
    jpath, mpath = write(out, out_dir)
    if not args.quiet:
        print()
        print("\n".join(results_table(out)))
        print()
        print("\n".join(targets_table(out)))
        print(f"\nwrote {mpath} and {jpath} ({out['wall_s'] / 60:.1f} min)")
    failed = [r["id"] for r in results if r.get("status") in ("check failed", "error")]
    if failed:
        print(f"cases with a failed check or an error: {', '.join(failed)}", file=sys.stderr)
    return 1 if any(r.get("status") == "check failed" for r in results) else 0
