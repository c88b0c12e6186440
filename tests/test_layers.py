"""The layering of issue 18: the library never imports the command line, and the experiments' metric registry
(names -> scoring functions) refuses what it cannot score."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch


def test_library_modules_do_not_import_the_command_line():
    code = ("import sys, attrkit.metrics, attrkit.experiments, attrkit.runs, attrkit.readers; "
            "print(sorted(m for m in sys.modules if m.startswith('attrkit.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_metric_registry_refuses_bad_names_and_unknown_metrics():
    from attrkit.experiments import METRICS, evaluate_methods, register_metric, unregister_metric
    assert list(METRICS)[:3] == ["deletion", "insertion", "morf_lerf"] and "sanity" in METRICS
    with pytest.raises(ValueError, match="already registered"):
        register_metric("deletion")
    with pytest.raises(ValueError, match="identifier"):
        register_metric("top 5%")
    with pytest.raises(ValueError, match="not registered"):
        unregister_metric("no_such_metric")
    model = torch.nn.Linear(3, 2)
    data = SimpleNamespace(x=torch.rand(2, 3), masks=None)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_methods(model, data, ["saliency"], ["no_such_metric"], progress=False)


def test_mask_metrics_are_nan_without_masks_and_dict_metrics_name_their_columns():
    from attrkit.experiments import evaluate_methods
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    data = SimpleNamespace(x=torch.rand(3, 3), masks=None)
    row, = evaluate_methods(model, data, ["integrated_gradients"], ["pointing_game", "completeness"], progress=False)
    assert row["pointing_game"] != row["pointing_game"]                  # NaN: no masks to point at
    assert 0.0 <= row["completeness_gap"] < 0.05 and "completeness" not in row   # IG's relative gap, 16 steps
