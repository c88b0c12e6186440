"""Run one case: set up, check every result against the peer (or a reference) before timing, count the
work, time the implementations alternately, measure memory, and evaluate the targets."""
from __future__ import annotations

import statistics
import time
import traceback
from dataclasses import dataclass, field

import torch

from .case import Case, Check
from .flops import WorkCounter
from .measure import alternate, probe_memory


@dataclass
class Config:
    """How much measuring to do. ``quick`` shrinks repeats and the costly workloads."""
    quick: bool = False
    repeats: int | None = None          # timed runs per implementation (default 5, quick 2)
    long_round_s: float = 30.0          # a round longer than this gets 3 runs in full mode (30-minute budget)
    memory: bool = True                 # measure peak RSS in fresh processes
    limit_gflops: float | None = None   # the machine's matmul rate, filled in by the driver
    progress: bool = True
    log: list = field(default_factory=list)

    def runs(self, case: Case, round_s: float = 0.0) -> int:
        """Timed runs for ``case`` whose one round (every implementation once) took ``round_s``."""
        if case.repeats == 0:
            return 0
        if self.repeats is not None:
            return self.repeats
        if self.quick:
            return 2
        if case.repeats is not None:
            return case.repeats
        return 3 if round_s > self.long_round_s else 5

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, flush=True)


def _self_reported(out) -> dict:
    info = getattr(out, "info", None)
    if isinstance(info, dict):
        return {k: info[k] for k in ("n_evals", "seconds") if k in info}
    return {}


def run_case(case: Case, cfg: Config) -> dict:
    """Everything measured for ``case``, as a JSON-ready dict."""
    result = {"id": case.id, "workload": case.workload, "title": case.title, "notes": list(case.notes),
              "rows": [], "targets": [], "extra": dict(case.extra)}
    if case.unavailable:
        result.update(status="not available", reason=case.unavailable)
        result["targets"] = [{"text": t.text, "met": None, "value": None, "detail": "not available"}
                             for t in case.targets]
        return result
    t_start = time.perf_counter()
    try:
        if case.prepare is not None:
            cfg.say(f"  [{case.id}] preparing")
            result["extra"].update(case.prepare())
        outputs, work, runs, first_s = {}, {}, {}, {}
        models = [m for m in [case.model, *case.models] if m is not None]
        for impl in case.impls:
            cfg.say(f"  [{case.id}] {impl.label}: set-up and checked run")
            run = impl.make()
            counters = [WorkCounter(m) for m in models]
            for c in counters:
                c.__enter__()
            try:
                t0 = time.perf_counter()
                outputs[impl.label] = run()
                first_s[impl.label] = time.perf_counter() - t0
            finally:
                for c in counters:
                    c.__exit__(None, None, None)
            work[impl.label] = _merge(counters)
            if isinstance(outputs[impl.label], dict) and isinstance(outputs[impl.label].get("_work"), dict):
                work[impl.label].update(outputs[impl.label]["_work"])
            runs[impl.label] = run
        checks = case.check(outputs)
        timed = {i.label: runs[i.label] for i in case.impls
                 if i.timed and checks.get(i.label, Check(False, detail="no check")).ok}
        n = cfg.runs(case, sum(first_s[label] for label in timed))
        if timed:
            cfg.say(f"  [{case.id}] timing {len(timed)} implementation(s) x {n} alternating runs")
        if n == 0:      # one run only: the checked run (or the time the run reports for itself)
            times = {label: [_own_seconds(outputs[label], first_s[label])] for label in timed}
        else:
            times = alternate(timed, n) if timed else {}
        mem = {}
        if cfg.memory and case.memory:
            for label in timed:
                cfg.say(f"  [{case.id}] memory of {label} (fresh process)")
                mem[label] = probe_memory(case.id, label, cfg.quick)
        for impl in case.impls:
            label = impl.label
            chk = checks.get(label, Check(False, detail="no check result"))
            row = {"label": label, "library": impl.library, "settings": impl.settings, "primary": impl.primary,
                   "timed": impl.timed, "check": chk.as_dict(), "first_run_s": round(first_s[label], 4),
                   **work[label], "self_reported": _jsonable(_self_reported(outputs[label]))}
            ts = times.get(label)
            if ts:
                med = statistics.median(ts)
                row.update(times_s=[round(t, 4) for t in ts], median_s=med, min_s=min(ts), max_s=max(ts),
                           spread=(max(ts) - min(ts)) / med if med > 0 else None)
                row["gflops_per_s"] = work[label]["flops"] / med / 1e9 if med > 0 else None
                if cfg.limit_gflops and row["gflops_per_s"] is not None:
                    row["fraction_of_limit"] = row["gflops_per_s"] / cfg.limit_gflops
            elif impl.timed and not chk.ok:
                row["failure"] = "result failed its check: time not reported"
            if label in mem:
                row["memory"] = mem[label]
            result["rows"].append(row)
        _ratios(case, result)
        if case.finalize is not None:
            result["extra"].update(case.finalize())
        result["status"] = "ok" if all(r["check"]["ok"] for r in result["rows"]) else "check failed"
    except Exception as e:  # noqa: BLE001 - one broken workload must not stop the suite
        result.update(status="error", reason=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=6))
    for t in case.targets:
        try:
            met, value, detail = t.evaluate(result)
        except Exception as e:  # noqa: BLE001
            met, value, detail = None, None, f"could not evaluate: {e}"
        result["targets"].append({"text": t.text, "met": met, "value": value, "detail": detail})
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def _own_seconds(out, default: float) -> float:
    if isinstance(out, dict) and isinstance(out.get("_seconds"), (int, float)):
        return float(out["_seconds"])
    return default


def _merge(counters) -> dict:
    total = {"evals": 0, "grad_evals": 0, "forward_macs": 0, "backward_macs": 0, "flops": 0}
    for i, c in enumerate(counters):
        d = c.as_dict()
        for k in total:
            if k in ("evals", "grad_evals") and i > 0:
                total[k] = max(total[k], d[k])   # a split head's rows are the same evaluations
            else:
                total[k] += d[k]
    return total


def _ratios(case: Case, result: dict) -> None:
    """``attrkit / peer`` median-time ratio on every peer row (and on attrkit variants, vs the first peer)."""
    rows = result["rows"]
    prim = next((r for r in rows if r["primary"]), None)
    peers = [r for r in rows if r["library"] != "attrkit" and r.get("median_s")]
    ref_peer = peers[0] if peers else None
    for r in rows:
        if not r.get("median_s"):
            continue
        if r["library"] != "attrkit" and prim is not None and prim.get("median_s"):
            r["ratio"] = prim["median_s"] / r["median_s"]
            r["ratio_of"] = f"{prim['label']} / {r['label']}"
        elif r["library"] == "attrkit" and ref_peer is not None:
            r["ratio"] = r["median_s"] / ref_peer["median_s"]
            r["ratio_of"] = f"{r['label']} / {ref_peer['label']}"


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.tolist() if v.numel() <= 64 else f"tensor{tuple(v.shape)}"
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v
