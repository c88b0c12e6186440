"""Whole-data-set runs on Ray: identical to the local backend, resumable across backends, bad records."""
import functools
import json
import logging
import os
import sys

import numpy as np
import pytest
import torch

from attrkit import runs
from attrkit.models import MLP, SmallCNN

ray = pytest.importorskip("ray", reason="backend='ray' needs the ray extra (pip install 'attrkit[ray]')")

CNN = functools.partial(SmallCNN, in_channels=3, num_classes=3, in_size=8, width=2, hidden=8)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module (start-up costs seconds); runs reuse it and leave it running."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    runs.release_workers()
    if started:
        ray.shutdown()
    torch.set_num_threads(before)


def test_ray_equals_local_and_resumes_a_local_run(tmp_path):
    x = torch.rand(24, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(shard_size=5, steps=8, progress=False, keep_workers=True)   # reuse actors: faster tests
    local = runs.run(CNN, x, out=tmp_path / "local", **kw)
    on_ray = runs.run(CNN, x, out=tmp_path / "ray", backend="ray", workers=2, **kw)
    assert on_ray.stats["workers"] == 2 and ray.is_initialized()          # the module's instance stays up
    assert len({s.record["worker"] for s in on_ray.iter_shards()}) == 2     # both actors computed shards
    assert on_ray.ids == local.ids and len(on_ray) == 24
    assert torch.equal(on_ray.values(), local.values())
    assert torch.equal(on_ray.targets, local.targets) and torch.equal(on_ray.outputs, local.outputs)
    assert on_ray.config == local.config                                    # same configuration hash
    # a local run that lost two shards is finished on Ray, with the same numbers
    for k in ("000001", "000003"):
        (tmp_path / "local" / "shards" / f"{k}.json").unlink()
    resumed = runs.run(CNN, x, out=tmp_path / "local", backend="ray", workers=2, **kw)
    assert resumed.stats["computed_shards"] == 2 and resumed.stats["skipped_shards"] == 3
    assert torch.equal(resumed.values(), on_ray.values())


def test_ray_sampled_method_on_image_folder_with_corrupt_png(tmp_path):
    from PIL import Image
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    kw = dict(method="gradient_shap", n_samples=4, stdev=0.1, seed=7, shard_size=3, target="label",
              progress=False, keep_workers=True)
    with pytest.warns(runs.BadRecordsWarning):
        local = runs.run(CNN, str(root), out=tmp_path / "local", **kw)
    with pytest.warns(runs.BadRecordsWarning):
        on_ray = runs.run(CNN, str(root), out=tmp_path / "ray", backend="ray", workers=2, **kw)
    assert [e["id"] for e in on_ray.errors()] == ["b/2.png"] == [e["id"] for e in local.errors()]
    lines = (tmp_path / "ray" / "errors.jsonl").read_text().splitlines()
    assert [json.loads(s)["id"] for s in lines] == ["b/2.png"]
    assert len(on_ray) == 9 and on_ray.ids == local.ids
    assert torch.equal(on_ray.values(), local.values())


def test_ray_table_source_with_malformed_row(tmp_path):
    x = np.random.default_rng(1).normal(size=(10, 3))
    rows = ["f1,f2,f3,y"] + [",".join(f"{v:.5f}" for v in r) + f",{i % 2}" for i, r in enumerate(x)]
    rows[4] = "1.0,,2.0,1"                                                   # a missing value
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    src = runs.TableSource(tmp_path / "t.csv", target="y")
    model = functools.partial(MLP, 3, [6], "tanh", 2)
    kw = dict(method="integrated_gradients", steps=6, shard_size=4, progress=False)
    with pytest.warns(runs.BadRecordsWarning):
        local = runs.run(model, src, out=tmp_path / "local", **kw)
    with pytest.warns(runs.BadRecordsWarning):
        on_ray = runs.run(model, src, out=tmp_path / "ray", backend="ray", workers=2, **kw)
    assert [e["id"] for e in on_ray.errors()] == ["3"] and len(on_ray) == 9
    assert torch.equal(on_ray.values(), local.values())
    from attrkit.runs import ray_backend
    assert not any(ray_backend._POOL.values())            # without keep_workers the actors are gone


def test_ray_address_connects_to_existing_cluster(monkeypatch):
    """With RAY_ADDRESS set and no Ray in this process, the backend joins that cluster (no local start)."""
    from attrkit.runs import ray_backend
    calls = []

    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **kw):
            calls.append(kw)

    monkeypatch.setattr(ray_backend, "import_ray", lambda: FakeRay())
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    _, owned = ray_backend.ensure_ray(4)
    assert owned and calls[0]["address"] == "ray://head:10001" and "num_cpus" not in calls[0]
    monkeypatch.delenv("RAY_ADDRESS")
    ray_backend.ensure_ray(3)
    assert calls[1]["num_cpus"] == 3 and calls[1]["include_dashboard"] is False
    from attrkit.runs import reaper                         # a local start has its watchdog; end it here
    assert ray_backend._REAPER is not None or not sys.platform.startswith("linux")
    reaper.stop(ray_backend._REAPER)
    ray_backend._REAPER = None
