"""The GPU check (benchmarks/gpu_check.py) in its CPU smoke mode, so it keeps working where no GPU is lent:
every method's CPU-vs-device comparison (here CPU against CPU) and every timed case with its value checks."""
import json

import pytest
import torch

from benchmarks import gpu_check


@pytest.mark.slow
def test_smoke_mode_runs_every_part_and_checks_values(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert gpu_check.main(["--device", "cpu", "--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Parity" in text and "## Timing on the device" in text and "FAIL" not in text
    report = json.loads((tmp_path / "gpu.md.json").read_text())
    import attrkit as ak
    methods = set(ak.methods())
    for model in ("digits_cnn", "breast_cancer_mlp", "resnet18/4 32px"):
        rows = [r for r in report["parity"] if r["model"] == model]
        assert {r["method"] for r in rows} == methods
        # images: every method runs (CAMs included) but the attention family (no attention module: refused);
        # the MLP refuses CAMs and exact Shapley of 30 players
        attention = {n for n, s in ak.methods().items() if s.family == "attention"}
        assert model == "breast_cancer_mlp" or all(r["status"] == "ok" for r in rows if r["method"] not in attention)
        assert all(r["status"] != "FAIL" for r in rows)
    mlp = {r["method"]: r["status"] for r in report["parity"] if r["model"] == "breast_cancer_mlp"}
    assert mlp["grad_cam"] == mlp["shapley"] == "refused on both"
    assert mlp["kernel_shap"] == mlp["shapley_sampling"] == mlp["integrated_gradients"] == "ok"
    cases = {r["case"].split(",")[0].split(" ")[0] for r in report["timing"]}
    assert cases == {"IG", "occlusion", "exact", "KernelSHAP", "layer"}
    assert all(r["ok"] and r["median_s"] > 0 for r in report["timing"])
    assert report["rates_gflops"]["fp32"] > 0 and report["rates_gflops"]["bf16"] > 0
    assert "% fp32 rate" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message and exit status 2 on a machine without "
                    "CUDA; with a CUDA device the script runs the real check instead (python -m benchmarks.gpu_check)")
def test_without_cuda_it_says_so_and_exits_2(capsys):
    assert gpu_check.main([]) == 2
    assert "No CUDA device" in capsys.readouterr().err
