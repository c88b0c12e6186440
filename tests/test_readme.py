"""The README's Python tour runs as written (on the shipped zoo model) and its CLI lines name real commands."""
import re
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


def test_cli_tour_commands_exist(capsys):
    commands = {line.split()[1] for block in _blocks("bash") for line in block.splitlines()
                if line.startswith("attrkit ")}
    assert commands
    from attrkit.cli import main
    for cmd in sorted(commands):                   # in-process (the console script is tested in test_cli.py)
        assert main([cmd, "--help"]) == 0, cmd


def test_package_functions_survive_submodule_imports():
    import torch

    import attrkit as ak
    import attrkit.html_report  # noqa: F401  (the modules are named unlike the functions they export)
    import attrkit.model_summary  # noqa: F401
    assert callable(ak.report) and callable(ak.summary)
    assert "Total params: 3" in str(ak.summary(torch.nn.Linear(2, 1), (1, 2)))


def _cli(args, capsys):
    from attrkit.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_readme_commands_run_as_written(tmp_path, capsys, monkeypatch):
    """Every `attrkit ...` line of the README's bash block runs (model.pt, cat.png, images/ made here)."""
    import shlex

    import numpy as np
    import pytest
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    import attrkit as ak
    from attrkit.models import SmallCNN
    from attrkit.train import save
    monkeypatch.chdir(tmp_path)
    save(SmallCNN(in_channels=3, num_classes=3, in_size=16, width=2, hidden=8), tmp_path / "model.pt",
         meta={"classes": ["a", "b", "c"]})
    rgb = lambda p, s: Image.fromarray(np.random.default_rng(s).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
    rgb(tmp_path / "cat.png", 0)
    (tmp_path / "images").mkdir()
    for i in range(3):
        rgb(tmp_path / "images" / f"{i}.png", i)
    lines = [ln.split("#")[0].strip() for block in _blocks("bash") for ln in block.splitlines()
             if ln.startswith("attrkit ")]
    assert any(ln.startswith("attrkit run --model model.pt --data images/") for ln in lines)
    for line in lines:
        args = shlex.split(line)[1:]
        if args[0] == "run":
            args += ["-O", "steps=4"]
        code, out, err = _cli(args, capsys)
        assert code == 0, (line, err)
    assert (tmp_path / "out" / "cat_grad_cam.png").exists() and len(ak.load_run(tmp_path / "run")) == 3
