"""Whole-data-set runs, local backend: shard store, resume after SIGKILL, bad records, global importance, CLI."""
import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import attrkit as ak
from attrkit import runs
from attrkit.models import MLP, SmallCNN



@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and the 2 cores are shared by the whole suite)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CNN = functools.partial(SmallCNN, in_channels=3, num_classes=3, in_size=8, width=2, hidden=8)


def images(n=20, seed=0):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_run_equals_explain_per_shard_and_resume_skips_everything(tmp_path):
    x = images(22)
    r = runs.run(CNN, x, out=tmp_path / "a", shard_size=6, steps=8, progress=False)
    assert (len(r), r.n_shards, r.complete, r.n_errors) == (22, 4, True, 0)
    ref = torch.cat([ak.explain(CNN(), x[i:i + 6], steps=8).values for i in range(0, 22, 6)])
    torch.testing.assert_close(r.values(), ref, rtol=0, atol=1e-6)
    assert r.ids == [str(i) for i in range(22)] and r.index.tolist() == list(range(22))
    assert torch.equal(r.targets, CNN()(x).argmax(1))
    torch.testing.assert_close(r.outputs, CNN()(x).detach(), rtol=1e-5, atol=1e-6)
    gap = torch.tensor(r.shard(0).info["completeness_gap"])
    assert gap.shape == (6,) and (gap >= 0).all()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["completed"] == [0, 1, 2, 3] and manifest["n_done"] == 22 and len(manifest["config_hash"]) == 16
    again = runs.run(CNN, x, out=tmp_path / "a", shard_size=6, steps=8, progress=False)
    assert again.stats["computed_shards"] == 0 and again.stats["skipped_shards"] == 4
    # a lost shard is recomputed alone, with the same numbers
    (tmp_path / "a" / "shards" / "000002.json").unlink()
    assert runs.load_run(tmp_path / "a").missing == [2]
    again = runs.run(CNN, x, out=tmp_path / "a", shard_size=6, steps=8, progress=False)
    assert again.stats["computed_shards"] == 1
    torch.testing.assert_close(again.values(), ref, rtol=0, atol=1e-6)


def test_global_importance_of_run_equals_in_memory_mean(tmp_path):
    x = images(30, seed=1)
    r = runs.run(CNN, x, out=tmp_path, shard_size=7, steps=8, progress=False)
    a = ak.explain(CNN(), x, steps=8)
    gi = ak.global_importance(r)
    assert gi.n == 30
    torch.testing.assert_close(gi.mean, a.values.abs().mean(0), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gi.std_err, ak.global_importance(a).std_err, rtol=1e-4, atol=1e-7)
    signed = ak.global_importance(r, signed=True)
    torch.testing.assert_close(signed.mean, a.values.mean(0), rtol=1e-5, atol=1e-7)
    # streaming: iter_values yields one shard at a time
    sizes = [v.shape[0] for v in r.iter_values()]
    assert sizes == [7, 7, 7, 7, 2]


def test_changed_configuration_is_refused(tmp_path):
    x = images(8)
    runs.run(CNN, x, out=tmp_path, shard_size=4, steps=8, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*steps"):
        runs.run(CNN, x, out=tmp_path, shard_size=4, steps=16, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*shard_size"):
        runs.run(CNN, x, out=tmp_path, shard_size=3, steps=8, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*data"):
        runs.run(CNN, x + 0.01, out=tmp_path, shard_size=4, steps=8, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*model"):
        runs.run(functools.partial(CNN, seed=1), x, out=tmp_path, shard_size=4, steps=8, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*method"):
        runs.run(CNN, x, method="saliency", out=tmp_path, shard_size=4, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*seed"):
        runs.run(CNN, x, out=tmp_path, shard_size=4, steps=8, seed=5, progress=False)
    # the batching knob does not change results, so it may change between resumes
    r = runs.run(CNN, x, out=tmp_path, shard_size=4, steps=8, batch_size=3, progress=False)
    assert r.stats["skipped_shards"] == 2


def test_sampled_method_is_reproducible_and_seeded_per_shard(tmp_path):
    x = images(10)
    kw = dict(method="gradient_shap", shard_size=4, n_samples=6, stdev=0.1, progress=False)
    a = runs.run(CNN, x, out=tmp_path / "a", seed=3, **kw).values()
    b = runs.run(CNN, x, out=tmp_path / "b", seed=3, batch_size=5, **kw).values()
    c = runs.run(CNN, x, out=tmp_path / "c", seed=4, **kw).values()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.allclose(a, c)
    seeds = [s.seed for s in runs.load_run(tmp_path / "a").iter_shards()]
    assert len(set(seeds)) == 3


# ------------------------------------------------------------------------------------------ kill / resume
JOB = textwrap.dedent("""
    import os, sys, time
    import torch
    from attrkit import runs
    from attrkit.models import SmallCNN

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN(in_channels=1, num_classes=3, in_size=8, width=2, hidden=8)
        def forward(self, x):
            time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
            return self.net(x)

    def data():
        return torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def main(out):
        runs.run(Slow, data(), out=out, shard_size=4, steps=8, method="integrated_gradients", progress=False)
""")


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    out = tmp_path / "killed"
    env = dict(os.environ, JOB_SLEEP="0.04", OMP_NUM_THREADS="1")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import job; job.main({str(out)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    shards = out / "shards"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = [p for p in shards.glob("*.json") if re.fullmatch(r"\d{6}\.json", p.name)] \
                if shards.is_dir() else []
            if len(done) >= 3 or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the job finished before it could be killed; make it slower"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = runs.load_run(out)
    assert 0 < len(partial.completed) < 12, partial
    sys.path.insert(0, str(tmp_path))
    try:
        import job
        resumed = runs.run(job.Slow, job.data(), out=out, shard_size=4, steps=8, progress=False)
        fresh = runs.run(job.Slow, job.data(), out=tmp_path / "fresh", shard_size=4, steps=8, progress=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("job", None)
    assert resumed.stats["skipped_shards"] == len(partial.completed)
    assert resumed.stats["computed_shards"] == 12 - len(partial.completed)
    assert sorted(resumed.ids, key=int) == resumed.ids == [str(i) for i in range(48)]   # each sample once
    assert len(set(resumed.ids)) == 48 == len(resumed)
    torch.testing.assert_close(resumed.values(), fresh.values(), rtol=0, atol=0)
    assert not list(shards.glob("*.tmp-*"))


# ------------------------------------------------------------------------------------------ bad records
def _write_images(root: Path, n_per_class=6, size=8, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / c / f"{i:02d}.png")


def _read(path):
    from PIL import Image
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def test_folder_with_corrupt_png_finishes_and_names_it(tmp_path):
    root = tmp_path / "imgs"
    _write_images(root)
    good = (root / "dog" / "00.png").read_bytes()
    (root / "dog" / "03.png").write_bytes(good[:40])                     # truncated: a corrupt PNG
    with pytest.warns(runs.BadRecordsWarning, match="1 bad record"):
        r = runs.run(CNN, str(root), out=tmp_path / "run", shard_size=5, steps=8, target="label", progress=False)
    lines = (tmp_path / "run" / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 1
    err = json.loads(lines[0])
    assert err["id"] == "dog/03.png" and err["index"] == 9 and "decode" in err["reason"]
    expected_ids = [f"{c}/{i:02d}.png" for c in ("cat", "dog") for i in range(6) if (c, i) != ("dog", 3)]
    assert r.ids == expected_ids and len(r) == 11 and r.n_errors == 1
    assert r.labels.tolist() == [0] * 6 + [1] * 5 and r.targets.tolist() == r.labels.tolist()
    x = torch.stack([_read(root / i) for i in expected_ids])
    ref = ak.explain(CNN(), x, target=r.labels, steps=8).values
    torch.testing.assert_close(r.values(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(runs.BadRecordsError, match="1 bad record"):
        runs.run(CNN, str(root), out=tmp_path / "run", shard_size=5, steps=8, target="label", strict=True,
                 progress=False)


def test_image_preprocessing_and_size_mismatch(tmp_path):
    from PIL import Image
    root = tmp_path / "imgs"
    _write_images(root, n_per_class=2)
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(root / "cat" / "zz_odd.png")
    src = runs.ImageFolderSource(root)
    b = src.load(0, len(src))
    assert [e[1] for e in b.errors] == ["cat/zz_odd.png"] and "size=" in b.errors[0][2]
    src = runs.ImageFolderSource(root, size=4, mean=[0.5, 0.4, 0.3], std=0.25)
    b = src.load(0, len(src))
    assert not b.errors and b.x.shape == (5, 3, 4, 4)
    im = Image.open(root / "cat" / "00.png").convert("RGB").resize((4, 4), Image.BILINEAR)
    want = (torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1)
            - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / 0.25
    torch.testing.assert_close(b.x[0], want)
    grey = runs.ImageFolderSource(root, size=(4, 6), mode="L")
    assert grey.load(0, 2).x.shape == (2, 1, 4, 6)


def test_csv_and_parquet_with_malformed_rows(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    lines = ["id,a,b,c,d,label"] + [f"s{i}," + ",".join(f"{v:.6f}" for v in row) + f",{i % 3}"
                                     for i, row in enumerate(x)]
    lines[3] = "s2,1.0,oops,2.0,3.0,1"            # not a number
    lines[6] = "s5,1.0,2.0,3.0,1"                 # a field short
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    model = functools.partial(MLP, 4, [8], "relu", 3)
    src = runs.TableSource(tmp_path / "t.csv", target="label", id_column="id")
    with pytest.warns(runs.BadRecordsWarning, match="2 bad record"):
        r = runs.run(model, src, method="saliency", out=tmp_path / "csv", shard_size=5, target="label",
                     progress=False)
    errs = {e["id"]: e["reason"] for e in r.errors()}
    assert set(errs) == {"s2", "s5"} and "'b'" in errs["s2"] and "expected 6 fields" in errs["s5"]
    keep = [i for i in range(12) if i not in (2, 5)]
    xr = torch.from_numpy(np.round(x[keep], 6))
    ref = ak.explain(model(), xr, method="saliency", target=torch.tensor([i % 3 for i in keep])).values
    torch.testing.assert_close(r.values(), ref, rtol=1e-4, atol=1e-5)
    assert r.ids == [f"s{i}" for i in keep]
    # the same table as Parquet, with a missing value
    df = pd.DataFrame(x, columns=list("abcd"))
    df.loc[4, "c"] = None
    df["label"] = [i % 3 for i in range(12)]
    df.to_parquet(tmp_path / "t.parquet")
    with pytest.warns(runs.BadRecordsWarning):
        r = runs.run(functools.partial(MLP, 5, [8], "relu", 3), str(tmp_path / "t.parquet"), method="saliency", out=tmp_path / "pq", shard_size=5,
                     progress=False)
    assert [e["id"] for e in r.errors()] == ["4"] and "'c'" in r.errors()[0]["reason"]
    assert len(r) == 11 and r.values().shape == (11, 5)      # no target column given: all 5 are features
    src = runs.TableSource(tmp_path / "t.parquet", columns=list("abd"))
    assert src.load(0, 12).x.shape == (12, 3)


# --------------------------------------------------------------------------------------------- factories
def test_saved_model_file_and_import_string_factories(tmp_path):
    from attrkit.train import save
    x = images(6)
    path = save(CNN(), tmp_path / "m.pt")
    a = runs.run(str(path), x, out=tmp_path / "a", shard_size=4, steps=8, progress=False)
    b = runs.run(CNN, x, out=tmp_path / "b", shard_size=4, steps=8, progress=False)
    torch.testing.assert_close(a.values(), b.values(), rtol=0, atol=0)
    assert a.config["model"] == b.config["model"]            # same class and weights -> same configuration
    bench = runs.run("attrkit.models:bench_mlp", torch.rand(5, 20), method="saliency", out=tmp_path / "c",
                     progress=False)
    assert bench.values().shape == (5, 20)


def test_bad_input_errors(tmp_path):
    x = images(4)
    with pytest.raises(ValueError, match="backend"):
        runs.run(CNN, x, out=tmp_path / "a", backend="spark")
    with pytest.raises(ValueError, match="backend='ray'"):
        runs.run(CNN, x, out=tmp_path / "a", workers=2)
    with pytest.raises(ValueError, match="labels"):
        runs.run(CNN, x, out=tmp_path / "a", target="label")
    with pytest.raises(TypeError, match="steps"):
        runs.run(CNN, x, method="saliency", out=tmp_path / "a", steps=3)
    with pytest.raises(ValueError, match="out="):
        runs.run(CNN, x)
    with pytest.raises(ValueError, match="no attribute"):
        runs.run("attrkit.models:nope", x, out=tmp_path / "a")
    with pytest.raises(TypeError, match="dataset"):
        runs.run(CNN, 3.0, out=tmp_path / "a")
    with pytest.raises(ValueError, match="not an attrkit run folder"):
        runs.load_run(tmp_path / "nothing")
    held = runs.store.RunStore(tmp_path / "busy")
    held.lock()
    try:
        with pytest.raises(ValueError, match="another attrkit run"):
            runs.run(CNN, x, out=tmp_path / "busy", progress=False)
    finally:
        held.unlock()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_resume_strict_and_usage_errors(tmp_path, capsys):
    root = tmp_path / "imgs"
    _write_images(root, n_per_class=3)
    (root / "cat" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    from attrkit.cli_run import cli_main
    args = ["attrkit.models:bench_cnn", str(root), "--size", "64", "-O", "steps=2", "--shard-size", "4",
            "--out", str(tmp_path / "run"), "--no-progress", "--method", "integrated_gradients"]
    assert cli_main(args) == 0
    cap = capsys.readouterr()
    assert "5 attributions" in cap.out and "1 bad record" in cap.err
    assert cli_main(args + ["--strict"]) == 3                     # resumed (nothing to do), then strict
    assert "strict" in capsys.readouterr().err
    assert cli_main(args[:-2] + ["-O", "steps=3", "--no-progress"]) == 1
    assert "different configuration" in capsys.readouterr().err
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(6, 20)).astype(np.float32),
             y=np.arange(6) % 2)
    assert cli_main(["attrkit.models:bench_mlp", str(tmp_path / "d.npz"), "-o", str(tmp_path / "t"),
                          "-m", "saliency", "--target", "0", "--no-progress"]) == 0
    assert len(runs.load_run(tmp_path / "t")) == 6
    assert cli_main(["attrkit.models:bench_mlp", str(tmp_path / "d.npz"), "-o", str(tmp_path / "u"),
                          "-O", "novalue"]) == 2                          # usage error
    assert cli_main(["only-one-argument", "-o", str(tmp_path / "v")]) == 2  # no data: usage error
    from attrkit.cli import main
    assert main(["run", "attrkit.models:bench_mlp", str(tmp_path / "d.npz"), "-o", str(tmp_path / "t"), "-m",
                 "saliency", "--target", "0", "--no-progress"]) == 0           # wired as `attrkit run`


def test_missing_ray_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)                       # as if Ray were not installed
    with pytest.raises(ImportError, match=r"attrkit\[ray\]"):
        runs.run(CNN, images(4), out=tmp_path, backend="ray", progress=False)
