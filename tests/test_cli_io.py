"""The first hour with your own model: one input pipeline for explain / run / evaluate, the messages it gives,
one flag vocabulary, one exit-status table, --json everywhere (issue 17)."""
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.cli import main

PIL = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
pytest.importorskip("matplotlib", reason="the CLI's pictures need matplotlib")

NET_SOURCE = textwrap.dedent("""
    import torch
    from torch import nn

    class {name}(nn.Module):
        def __init__(self, channels={channels}):
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))
""")


@pytest.fixture(autouse=True)
def one_thread_and_clean_path(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))          # factories put their folder on it
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_net(folder: Path, module: str, channels: int = 1) -> Path:
    name = "Net"
    (folder / f"{module}.py").write_text(NET_SOURCE.format(name=name, channels=channels))
    return folder / f"{module}.py"


def make_net(channels=1):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).eval()


def grey_png(path: Path, seed=0, size=8) -> Path:
    a = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(a, mode="L").save(path)
    return path


# ------------------------------------------------------------------------------------------ model loading
def test_torch_saved_module_needs_trust_and_warns(tmp_path, capsys):
    model_file = tmp_path / "whole.pt"
    torch.save(make_net(), model_file)
    png = grey_png(tmp_path / "g.png")
    code, _, err = cli(["explain", "--model", model_file, "--input", png, "--out", tmp_path / "o"], capsys)
    assert code == 1 and "--trust" in err and "load(path, trust=True)" not in err
    code, out, err = cli(["explain", "--model", model_file, "--input", png, "--out", tmp_path / "o", "--trust",
                          "--method", "saliency", "--json"], capsys)
    assert code == 0, err
    assert "warning: --trust: unpickling" in err
    a = ak.Attribution.load(json.loads(out)["attribution"])
    assert a.values.shape == (1, 1, 8, 8)                      # grey: read from the model's first conv


def test_factory_from_the_current_folder_is_found_with_a_note(tmp_path, capsys, monkeypatch):
    write_net(tmp_path, "usernet_a")
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "w.pt"
    png = grey_png(tmp_path / "g.png")
    code, out, err = cli(["explain", "--model", "usernet_a:Net", "--input", png, "--method", "saliency",
                          "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    assert f"added {tmp_path} to the import path" in err
    # a state dict for it, by path/file.py:Factory from another folder
    sys.modules.pop("usernet_a", None)
    import importlib
    mod = importlib.import_module("usernet_a")
    m = mod.Net()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)
    torch.save(m.state_dict(), weights)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    code, out, err = cli(["explain", "--model", tmp_path / "usernet_a.py:Net", "--weights", weights, "--input", png,
                          "--method", "saliency", "--out", tmp_path / "o2", "--json"], capsys)
    assert code == 0, err
    a = ak.Attribution.load(json.loads(out)["attribution"])
    expected = ak.explain(m, a.inputs, method="saliency")
    torch.testing.assert_close(a.values, expected.values)      # the weights were loaded
    code, _, err = cli(["explain", "--model", "nosuchmodule_xyz:Net", "--input", png, "--out", tmp_path], capsys)
    assert code == 1 and "PYTHONPATH" in err and len(err.strip().splitlines()) == 1


def test_not_a_model_truncated_file_and_state_dict_messages(tmp_path, capsys):
    png = grey_png(tmp_path / "g.png")
    text = tmp_path / "notes.pt"
    text.write_text("hello, this is not a model\n")
    full = tmp_path / "net.pt"
    torch.save(make_net().state_dict(), full)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[:200])
    for path, needle in ((text, "is not a model file"), (cut, "truncated or damaged"),
                         (full, "holds only weights (a state dict)")):
        code, _, err = cli(["explain", "--model", path, "--input", png, "--out", tmp_path], capsys)
        assert code == 1 and needle in err and "Errno" not in err and "arbitrary code" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_torchscript_grey_model_through_explain_run_and_evaluate(tmp_path, capsys):
    script = tmp_path / "grey.ts"
    torch.jit.script(make_net(1)).save(str(script))
    folder = tmp_path / "imgs"
    for i in range(3):
        grey_png(folder / f"{i}.png", seed=i)
    code, out, err = cli(["explain", "--model", script, "--input", folder / "0.png", "--method", "saliency",
                          "--out", tmp_path / "e", "--json"], capsys)
    assert code == 0, err
    assert ak.Attribution.load(json.loads(out)["attribution"]).values.shape == (1, 1, 8, 8)
    code, out, err = cli(["run", "--model", script, "--data", folder, "--method", "saliency", "--out",
                          tmp_path / "r", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["samples"] == 3 and len(ak.load_run(tmp_path / "r")) == 3
    code, out, err = cli(["evaluate", "--model", script, "--data", folder, "--methods", "saliency", "--metrics",
                          "deletion", "--steps", "3", "--json"], capsys)
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert row["method"] == "saliency" and 0 <= row["deletion"] <= 1
    # a grey model read as RGB: the error suggests --channels 1, in one line
    code, _, err = cli(["explain", "--model", script, "--input", folder / "0.png", "--channels", "3",
                        "--out", tmp_path / "e"], capsys)
    assert code == 1 and "--channels 1" in err and len(err.strip().splitlines()) == 1


def test_explain_target_column_for_a_labelled_csv(tmp_path, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    model_file = tmp_path / "lin.ts"
    torch.jit.script(net).save(str(model_file))
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,label\n1,2,3,1\n0,1,0,0\n")
    code, _, err = cli(["explain", "--model", model_file, "--input", rows, "--out", tmp_path / "o"], capsys)
    assert code == 1 and "--target-column" in err and "takes 3" in err
    code, out, err = cli(["explain", "--model", model_file, "--input", rows, "--target-column", "label",
                          "--target", "label", "--method", "saliency", "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["targets"] == [1, 0]
    a = ak.Attribution.load(res["attribution"])
    torch.testing.assert_close(a.values[0], net[0].weight[1].detach())   # saliency of a linear model = its row


# ------------------------------------------------------------------------------------------ one vocabulary
def test_every_help_shows_the_exit_status_table_and_no_restructuredtext(capsys):
    for command in ["demo", "explain", "train", "methods", "evaluate", "run", "bench"]:
        code, out, _ = cli([command, "--help"], capsys)
        assert code == 0 and "exit status:" in out and "3    finished, but bad records" in out, command
        assert "``" not in out and ":func:" not in out, command
    code, out, _ = cli(["--help"], capsys)
    assert "2    usage error" in out


def test_shared_flags_mean_the_same_everywhere(capsys):
    from attrkit.cli import build_parser
    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    for command in ("explain", "run"):
        flags = {s for a in sub[command]._actions for s in a.option_strings}
        assert {"--model", "--weights", "--trust", "-m", "--method", "-O", "--option", "--layer", "--target",
                "--channels", "--grayscale", "--size", "--mean", "--std", "--target-column", "-o", "--out",
                "--json", "-q", "--quiet", "--no-progress", "--data", "--input"} <= flags, command
    flags = {s for a in sub["evaluate"]._actions for s in a.option_strings}
    assert {"--model", "--weights", "--trust", "--channels", "--data", "--json", "-q", "--no-progress"} <= flags


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_before_or_after_every_subcommand_and_errors_as_json(where, tmp_path, capsys):
    def js(args):
        argv = ["--json", *args] if where == "before" else [*args, "--json"]
        code, out, err = cli(argv, capsys)
        return code, json.loads(out), err
    code, res, _ = js(["methods", "kernel_shap"])
    assert code == 0 and any(r["option"] == "n_samples" for r in res["options"])
    code, res, _ = js(["evaluate", "--model", "shapes_cnn", "--methods", "saliency", "--metrics", "deletion",
                       "--n", "1", "--steps", "2"])
    assert code == 0 and res["rows"][0]["method"] == "saliency"
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32))
    code, res, _ = js(["run", "--model", "attrkit.models:bench_mlp", "--data", tmp_path / "d.npz", "-m",
                       "saliency", "-o", tmp_path / "r"])
    assert code == 0 and res["samples"] == 4
    code, res, err = js(["explain", "--model", tmp_path / "none.pt", "--input", "x.png"])
    assert code == 1 and res["exit"] == 1 and "no such model file" in res["error"] and "no such model" in err
    code, res, _ = js(["explain", "--input", "x.png"])                          # argparse: --model missing
    assert code == 2 and res["exit"] == 2 and "required" in res["error"]
    code, res, _ = js(["run", "--model", "attrkit.models:bench_mlp", "--data", tmp_path / "d.npz", "-O", "bad",
                       "-o", tmp_path / "r2"])
    assert code == 2 and "KEY=VALUE" in res["error"]


def test_json_methods_into_head_has_no_broken_pipe():
    r = subprocess.run(f"{sys.executable} -m attrkit --json methods | head -c 20", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.startswith('{"methods"') and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, \
        r.stderr


def test_strict_exit_status_matches_its_help(tmp_path, capsys):
    folder = tmp_path / "imgs"
    for i in range(2):
        grey_png(folder / f"{i}.png", seed=i)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    code, out, _ = cli(["run", "--help"], capsys)
    assert "--strict" in out and "status 3" in out
    code, _, err = cli(["run", "--model", "attrkit.models:bench_cnn", "--data", folder, "--size", "64",
                        "-m", "saliency", "-o", tmp_path / "r", "--strict", "-q"], capsys)
    assert code == 3 and "strict" in err


# ------------------------------------------------------------------------------------------ figures
def test_figure_names_stay_distinct_when_stems_collide(tmp_path, capsys):
    script = tmp_path / "grey.ts"
    torch.jit.script(make_net(1)).save(str(script))
    files = [grey_png(tmp_path / "d1" / "cat.png", 0), grey_png(tmp_path / "d2" / "cat.png", 1),
             grey_png(tmp_path / "a b.png", 2), grey_png(tmp_path / "a_b.png", 3)]
    code, out, err = cli(["explain", "--model", script, "--input", *files, "--method", "saliency",
                          "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    figs = json.loads(out)["figures"]
    assert len(figs) == 4 and len(set(figs)) == 4 and all(Path(f).exists() for f in figs)
    assert [Path(f).name for f in figs] == ["d1_cat_saliency.png", "d2_cat_saliency.png", "a_b_saliency.png",
                                            "a_b-2_saliency.png"]


def test_methods_name_lists_options_and_run_takes_weights(tmp_path, capsys, monkeypatch):
    code, out, _ = cli(["methods", "kernel_shap"], capsys)
    assert code == 0 and "n_samples" in out and "2000" in out and "model evaluations" in out
    code, _, err = cli(["methods", "gradients"], capsys)
    assert code == 2 and "Did you mean gradient" in err
    write_net(tmp_path, "usernet_b")
    monkeypatch.chdir(tmp_path)
    import importlib
    sys.path.insert(0, str(tmp_path))                      # restored by the autouse fixture
    net = importlib.import_module("usernet_b").Net()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(-2)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    folder = tmp_path / "imgs"
    for i in range(2):
        grey_png(folder / f"{i}.png", seed=i)
    code, out, err = cli(["run", "--model", "usernet_b:Net", "--weights", tmp_path / "w.pt", "--data", folder,
                          "-m", "saliency", "-o", tmp_path / "r", "--json"], capsys)
    assert code == 0, err
    r = ak.load_run(tmp_path / "r")
    x = torch.stack([torch.from_numpy(np.asarray(PIL.open(folder / f"{i}.png"), np.float32) / 255)[None]
                     for i in range(2)])
    torch.testing.assert_close(r.values(), ak.explain(net.eval(), x, method="saliency").values)
