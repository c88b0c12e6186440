"""The benchmark machinery on a tiny workload: results are checked before they are timed (a wrong answer is a
failure with no time), work is counted, targets are evaluated, and the JSON and Markdown reports are written.
No timing assertions."""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from benchmarks.case import Case, Impl, agree, ratio_target  # noqa: E402
from benchmarks.flops import WorkCounter, forward_flops  # noqa: E402
from benchmarks.measure import measure_peak  # noqa: E402
from benchmarks.runner import Config, run_case  # noqa: E402
from benchmarks.workloads.common import values  # noqa: E402


def tiny_case() -> Case:
    """IG of a linear model equals w * x: attrkit, a hand-written 'peer', and a deliberately wrong one."""
    import attrkit as ak
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    lin = torch.nn.Linear(6, 2).eval()
    x = torch.rand(5, 6)

    def attrkit():
        return lambda: ak.explain(lin, x, "integrated_gradients", target=1, steps=4, progress=False)

    def exact():
        return lambda: (lin.weight[1].detach() * x)

    def wrong():
        return lambda: (lin.weight[1].detach() * x) * 1.5

    def gradient_peer():   # real model work so the counter has something to count
        def run():
            xx = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(lin(xx)[:, 1].sum(), xx)
            model(x)
            return g * x
        return run
    impls = [Impl("attrkit", "attrkit", attrkit, primary=True), Impl("peer", "exact", exact),
             Impl("peer", "wrong", wrong), Impl("peer", "gradient", gradient_peer)]
    return Case("T1", "T", "tiny linear IG", lin, impls, check=agree("exact", 1e-5, values),
                targets=[ratio_target("attrkit / exact <= 1000", "attrkit", "exact", 1000.0),
                         ratio_target("attrkit / wrong <= 1", "attrkit", "wrong", 1.0)])


def test_runner_rejects_a_wrong_answer_and_reports(tmp_path):
    cfg = Config(repeats=2, memory=False, progress=False, limit_gflops=10.0)
    res = run_case(tiny_case(), cfg)
    rows = {r["label"]: r for r in res["rows"]}
    assert res["status"] == "check failed"
    assert rows["wrong"]["check"]["ok"] is False and rows["wrong"]["check"]["error"] == pytest.approx(0.5, rel=1e-5)
    assert "median_s" not in rows["wrong"] and "failure" in rows["wrong"]
    assert rows["attrkit"]["check"]["ok"] and rows["attrkit"]["check"]["error"] < 1e-5
    assert len(rows["attrkit"]["times_s"]) == 2 and rows["attrkit"]["min_s"] <= rows["attrkit"]["median_s"]
    # attrkit counted: 5 rows x 4 points with a gradient, plus forwards on x and the baseline
    assert rows["attrkit"]["grad_evals"] == 20 and rows["attrkit"]["evals"] >= 30
    assert rows["gradient"]["flops"] == 2 * 2 * (5 * 6 * 2)      # forward + input-gradient backward of lin
    assert rows["exact"]["ratio"] == pytest.approx(rows["attrkit"]["median_s"] / rows["exact"]["median_s"])
    met = {t["text"]: t for t in res["targets"]}
    assert met["attrkit / wrong <= 1"]["met"] is False and "failed its check" in met["attrkit / wrong <= 1"]["detail"]
    assert met["attrkit / exact <= 1000"]["met"] in (True, False) and met["attrkit / exact <= 1000"]["value"] > 0

    results = {"date": "2000-01-01T00:00:00", "config": {"quick": True, "repeats": 2, "repeats_text": "2",
                                                        "memory": False, "names": ["T1"]},
               "machine": {"cpu": "test", "usable_cpus": 1, "torch_threads": 1, "memory_gb": 1, "blas": "x",
                           "mkldnn": False, "cuda": False, "os": "x", "python": "3", "load_average_at_start": None},
               "load_average_at_end": None, "versions": {"attrkit": "0", "captum": None},
               "limit": {"start": {"n": 8, "repeats": 1, "median_gflops": 10.0},
                         "end": {"n": 8, "repeats": 1, "median_gflops": 10.0}, "median_gflops": 10.0},
               "cases": [res, {"id": "T2", "workload": "T", "title": "missing", "status": "not available",
                               "reason": "method 'x' is not registered yet", "rows": [], "targets": [],
                               "notes": [], "extra": {}}],
               "wall_s": 1.0}
    jpath, mpath = report.write(results, str(tmp_path))
    with open(jpath) as fh:
        assert json.load(fh)["cases"][0]["id"] == "T1"
    md = open(mpath).read()
    assert "| T1 tiny linear IG |" in md and "**FAIL**" in md and "not reported" in md
    assert "not available: method 'x' is not registered yet" in md and "**missed**" in md


def test_work_counter_counts_macs_and_rows():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
    assert forward_flops(conv, torch.zeros(1, 3, 8, 8)) == 2 * (8 * 8 * 4 * 27 + 256 * 2)
    with WorkCounter(conv) as wc:
        with torch.no_grad():
            conv(torch.zeros(7, 3, 8, 8))
        xx = torch.zeros(3, 3, 8, 8, requires_grad=True)
        conv(xx).sum().backward()
    assert (wc.evals, wc.grad_evals) == (10, 3)
    assert wc.backward_macs == 3 * (8 * 8 * 4 * 27 + 256 * 2)
    assert not conv[0]._forward_hooks and not conv[2]._forward_hooks


def test_memory_measure_and_cli_entry(capsys):
    m = measure_peak(lambda: torch.ones(4_000_000).sum())   # 16 MB
    assert m["peak_rss_mb"] >= m["rss_before_mb"] > 0 and m["extra_peak_mb"] >= 0
    from attrkit.bench import main
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "W1" in out and "W9" in out
    assert main(["W99"]) == 2
