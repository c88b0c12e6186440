"""The command line: help everywhere, one-line errors with the right exit codes, explain, train, demo."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attrkit as ak
from attrkit.cli import DELEGATED, main

pytest.importorskip("matplotlib", reason="the CLI's pictures need matplotlib")
PIL = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")

COMMANDS = ["demo", "explain", "train", "methods", "evaluate", "run", "bench"]


def run_cli(args, capsys):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def zoo_model_file():
    """The zoo's shapes model file (shipped safetensors + JSON; attrkit.train.load reads it)."""
    from attrkit import zoo
    zoo.pretrained("shapes_cnn")                                   # checks the file's SHA-256
    return zoo.weights_path("shapes_cnn")


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    """A held-out shapes image written as a PNG."""
    from attrkit import zoo
    x = zoo.dataset("shapes_cnn").x[0]
    path = tmp_path_factory.mktemp("img") / "shape.png"
    PIL.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------------ help & usage
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    assert "usage:" in out or "attrkit" in out


def test_top_level_help_and_usage_errors(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and all(c in out for c in COMMANDS)
    code, _, err = run_cli(["explain", "--input", "x.png"], capsys)          # --model missing
    assert code == 2 and "required" in err and "Traceback" not in err
    code, _, err = run_cli(["frobnicate"], capsys)
    assert code == 2 and "invalid choice" in err


def test_methods_table_and_json(capsys):
    code, out, _ = run_cli(["methods"], capsys)
    assert code == 0 and "integrated_gradients" in out and "family" in out
    code, out, _ = run_cli(["methods", "--json"], capsys)
    names = [r["method"] for r in json.loads(out)["methods"]]
    assert code == 0 and names == sorted(ak.methods())
    code, _, err = run_cli(["methods", "--family", "astrology"], capsys)
    assert code == 2 and "Families:" in one_line_error(err)


# ------------------------------------------------------------------------------------------ explain
def test_explain_zoo_model_on_a_png_writes_a_heatmap(zoo_model_file, png, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["explain", "--model", str(zoo_model_file), "--input", str(png), "--method",
                              "integrated_gradients", "--option", "steps=8", "--out", str(out_dir), "--json"],
                             capsys)
    assert code == 0, err
    res = json.loads(out)
    fig = Path(res["figures"][0])
    assert fig.exists() and fig.suffix == ".png"
    with PIL.open(fig) as im:
        assert im.size[0] > 300 and im.size[1] > 200
    a = ak.Attribution.load(res["attribution"])
    assert a.values.shape == (1, 3, 64, 64) and a.method == "integrated_gradients"
    model = ak_load(zoo_model_file)
    x = torch.from_numpy(np.asarray(PIL.open(png).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert torch.allclose(a.inputs, x)                                       # the PNG was read as the model expects
    assert int(a.target[0]) == int(model(x).argmax())                        # default target: the prediction
    # by class name, at a layer, quietly
    code, out, err = run_cli(["explain", "--model", str(zoo_model_file), "--input", str(png), "--method", "grad_cam",
                              "--target", "star", "--layer", "features.6", "--out", str(out_dir), "-q"], capsys)
    assert code == 0 and out == "" and err == ""
    b = ak.Attribution.load(out_dir / "shape_grad_cam.npz")
    assert b.layer == "features.6" and int(b.target[0]) == model.meta["classes"].index("star")


def ak_load(path):
    from attrkit.train import load
    return load(path)


@pytest.mark.parametrize("case, needle, status", [
    ("missing file", "no such input file", 1),
    ("unknown method", "unknown method", 2),
    ("corrupt image", "cannot read", 1),
    ("missing layer", "no layer named", 2),
    ("missing model", "no such model file", 1),
    ("unknown class", "unknown target", 2),
])
def test_bad_input_gives_one_line_and_the_tables_exit_status(case, needle, status, zoo_model_file, png, tmp_path,
                                                             capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    args = {"missing file": ["--input", str(tmp_path / "nope.png")],
            "unknown method": ["--input", str(png), "--method", "integrated_gradient"],
            "corrupt image": ["--input", str(bad)],
            "missing layer": ["--input", str(png), "--layer", "features.99"],
            "missing model": ["--input", str(png), "--model", str(tmp_path / "none.pt")],
            "unknown class": ["--input", str(png), "--target", "hexagon"]}[case]
    model = [] if "--model" in args else ["--model", str(zoo_model_file)]
    code, out, err = run_cli(["explain", *model, *args, "--out", str(tmp_path)], capsys)
    assert code == status
    line = one_line_error(err)
    assert line.startswith("attrkit explain: error:") and needle in line


def test_console_script_exit_codes_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("attrkit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "attrkit.cli"]
    r = subprocess.run(cmd + ["explain", "--model", str(tmp_path / "none.pt"), "--input", "x.png"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ train + CSV
def test_train_then_explain_csv_rows(tmp_path, capsys):
    model_file = tmp_path / "logit.pt"
    code, out, err = run_cli(["train", "--data", "breast_cancer", "--model", "logistic", "--epochs", "5", "--lr", "0.01",
                              "--out", str(model_file), "--json", "-q"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["held_out"]["accuracy"] > 0.9 and model_file.exists()
    from attrkit.data import breast_cancer
    d = breast_cancer()
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"] + list(d.feature_names)[::-1])                  # extra column, other order
        for i in range(3):
            w.writerow([i] + d.x[i].tolist()[::-1])
    code, out, err = run_cli(["explain", "--model", str(model_file), "--input", str(rows), "--method", "saliency",
                              "--out", str(tmp_path / "o"), "--json"], capsys)
    assert code == 0, err
    a = ak.Attribution.load(json.loads(out)["attribution"])
    assert torch.allclose(a.inputs, d.x[:3])                                 # columns picked by name
    assert len(json.loads(out)["figures"]) == 3
    code, _, err = run_cli(["train", "--data", "imagenet"], capsys)
    assert code == 1 and "unknown data set" in one_line_error(err)


def test_delegated_commands_hand_over_their_arguments(capsys):
    for name in DELEGATED:
        code, out, _ = run_cli([name, "--help"], capsys)
        assert code == 0 and out.strip()


# ------------------------------------------------------------------------------------------ the demo
@pytest.mark.slow
def test_demo_fast_writes_report_and_figures(tmp_path, zoo_model_file):
    exe = Path(sys.executable).with_name("attrkit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "attrkit.cli"]
    env = dict(os.environ)
    r = subprocess.run(cmd + ["demo", "--fast", "--out", str(tmp_path / "demo")], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "demo"
    report = out / "report.html"
    assert report.exists() and f"report: {report}" in r.stdout
    html = report.read_text()
    assert "http://" not in html and "https://" not in html
    summary = json.loads((out / "summary.json").read_text())
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"figure_3_1_classes_x_layers.png", "deletion_curves.png", "insertion_curves.png",
            "table_importance.png", "table_waterfall.png", "table_beeswarm.png"} <= set(pngs)
    families = {ak.methods()[m].family for m in summary["methods"] if m in ak.methods()}
    # every method family is there (attention methods need a transformer, which the demo's models are not)
    assert families == {s.family for s in ak.methods().values()} - {"attention"}
    assert set(summary["methods"]) >= {"saliency", "integrated_gradients"}
    for p in pngs:
        with PIL.open(out / p) as im:
            im.load()


def test_explain_with_player_specs_and_boolean_words(zoo_model_file, png, tmp_path, capsys):
    """Coalition games from the command line: players=grid:K / superpixels:N, local=false (any case)."""
    from attrkit.cli_inputs import parse_options
    assert parse_options(["local=false", "a=True", "b=none", "c=3", "d=blur"]) == \
        {"local": False, "a": True, "b": None, "c": 3, "d": "blur"}
    results = {}
    for spec, local in (("grid:3", "false"), ("grid:3", "None"), ("superpixels:12", "true")):
        code, out, err = run_cli(["explain", "--model", str(zoo_model_file), "--input", str(png), "--method",
                                  "shapley", "--option", f"players={spec}", "--option", f"local={local}",
                                  "--out", str(tmp_path / spec.replace(":", "_")), "--json"], capsys)
        assert code == 0, err
        a = ak.Attribution.load(json.loads(out)["attribution"])
        results[(spec, local)] = a.info["player_values"]
    assert results[("grid:3", "false")].shape == (1, 9)
    torch.testing.assert_close(results[("grid:3", "false")], results[("grid:3", "None")], rtol=1e-5, atol=1e-7)
    assert results[("superpixels:12", "true")].shape[1] >= 6
    code, out, err = run_cli(["explain", "--model", str(zoo_model_file), "--input", str(png), "--method", "shapley",
                              "--option", "players=hexagons:3", "--out", str(tmp_path)], capsys)
    assert code == 2 and "grid:K" in one_line_error(err)
