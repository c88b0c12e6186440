"""Data-set runs meet real data (issue 17): NaN/Inf samples are bad records, named and skipped (as CSV rows are);
the image-folder fingerprint follows the files' content."""
import functools
import json
import os

import numpy as np
import pytest
import torch

import attrkit as ak
from attrkit import runs
from attrkit.models import MLP


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTRKIT_CACHE", str(tmp_path / "cache"))        # the digest cache of this test only
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NET = functools.partial(MLP, 5, [8], "relu", 2, seed=0)


def _data(n=9):
    return np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)


@pytest.mark.parametrize("form", ["tensor", "npy", "npz", "inputs"])
def test_nan_and_inf_samples_are_named_and_skipped_and_resume_works(form, tmp_path):
    x = _data()
    x[2, 1] = np.nan
    x[6, :2] = [np.inf, np.nan]
    data = {"tensor": lambda: torch.from_numpy(x),
            "npy": lambda: (np.save(tmp_path / "x.npy", x), str(tmp_path / "x.npy"))[1],
            "npz": lambda: (np.savez(tmp_path / "x.npz", x=x, y=np.arange(9) % 2), str(tmp_path / "x.npz"))[1],
            "inputs": lambda: ((torch.from_numpy(x),), torch.arange(9) % 2)}[form]()
    model = NET                        # "inputs": one input given as a tuple (the several-inputs source)
    with pytest.warns(runs.BadRecordsWarning, match="2 bad record"):
        r = runs.run(model, data, method="saliency", out=tmp_path / "run", shard_size=4, progress=False)
    errors = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert [(e["index"], e["id"]) for e in errors] == [(2, "2"), (6, "6")]
    assert "1 NaN and 0 infinite" in errors[0]["reason"] and "1 NaN and 1 infinite" in errors[1]["reason"]
    keep = [i for i in range(9) if i not in (2, 6)]
    assert r.ids == [str(i) for i in keep] and len(r) == 7
    ref = ak.explain(NET(), torch.from_numpy(x[keep]), method="saliency").values
    values = r.values()
    torch.testing.assert_close(values[0] if isinstance(values, tuple) else values, ref)
    with pytest.warns(runs.BadRecordsWarning):                        # resume: nothing left to do, no crash
        again = runs.run(model, data, method="saliency", out=tmp_path / "run", shard_size=4, progress=False)
    assert again.stats["computed_shards"] == 0 and len(again) == 7


def test_image_fingerprint_follows_content_and_is_cached(tmp_path, monkeypatch):
    from PIL import Image
    from attrkit.runs import hashing
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(root / f"{i}.png")
    first = runs.ImageFolderSource(root).fingerprint()
    calls = []
    real = hashing.file_digest
    monkeypatch.setattr(hashing, "file_digest", lambda p: calls.append(p) or real(p))
    hashing._MEMORY.clear()
    assert runs.ImageFolderSource(root).fingerprint() == first and calls == []     # digests from the SQLite cache
    target = root / "1.png"
    size, mtime = target.stat().st_size, target.stat().st_mtime_ns
    Image.fromarray(np.full((4, 4, 3), 99, np.uint8)).save(target)                 # an edit of the same size
    assert target.stat().st_size == size
    os.utime(target, ns=(mtime + 1_000_000, mtime + 1_000_000))
    assert runs.ImageFolderSource(root).fingerprint() != first
    assert [os.path.basename(p) for p in calls] == ["1.png"]                      # only the changed file re-read


def test_report_renders_nan_outputs(tmp_path):
    """A model that outputs NaN for a sample (e.g. a row the run kept) still gets its report page."""
    net = NET()
    a = ak.explain(net, torch.from_numpy(_data(3)), method="saliency")
    a.outputs[1] = float("nan")
    page = ak.report(a, tmp_path / "r.html").read_text()
    assert '"nan"' in page and "NaN" not in page.split("<script")[1].split("</script>")[0]
