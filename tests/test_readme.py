"""The README's Python tour runs as written (on the shipped zoo model) and its CLI lines name real commands."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_python_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = _blocks("python")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    a, s, c, l = scope["a"], scope["s"], scope["c"], scope["l"]
    assert a.values.shape == scope["x"].shape and a.heatmap().shape == (8, 64, 64)
    assert float(a.info["relative_gap"].max()) <= 0.01
    assert s.info["std_err"].numel() > 0 and c.layer and l.layer == "features.9"
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_cli_tour_commands_exist():
    commands = {line.split()[1] for block in _blocks("bash") for line in block.splitlines()
                if line.startswith("attrkit ")}
    assert commands
    for cmd in sorted(commands):
        r = subprocess.run([sys.executable, "-m", "attrkit", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr[-500:])


def test_package_functions_survive_submodule_imports():
    import torch

    import attrkit as ak
    import attrkit.report  # noqa: F401  (sets ak.report to the module)
    import attrkit.summary  # noqa: F401
    assert callable(ak.report) and callable(ak.summary)
    assert "Total params: 3" in str(ak.summary(torch.nn.Linear(2, 1), (1, 2)))
