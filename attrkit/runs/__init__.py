"""Whole data sets: ``run`` explains every sample into a resumable shard store, in-process or on Ray;
``load_run`` reads a store back lazily (``ak.global_importance(run)`` streams over it).

>>> import torch, tempfile, attrkit.runs as runs
>>> x = torch.rand(10, 3)
>>> r = runs.run(lambda: torch.nn.Linear(3, 2), x, method="saliency", out=tempfile.mkdtemp(), shard_size=4,
...              progress=False)
>>> len(r), r.n_shards, r.complete
(10, 3, True)
"""
from .api import BACKENDS, BadRecordsError, BadRecordsWarning, load_run, run
from .ray_backend import release_workers
from .sources import ImageFolderSource, Source, TableSource, TensorSource, as_source
from .store import Run, Shard

__all__ = ["run", "load_run", "Run", "Shard", "BACKENDS", "BadRecordsError", "BadRecordsWarning", "Source",
           "TensorSource", "ImageFolderSource", "TableSource", "as_source", "bench_throughput", "release_workers"]


def __getattr__(name):
    if name == "bench_throughput":         # lazy: keeps `python -m attrkit.runs.bench` free of a double import
        from .bench import bench_throughput
        return bench_throughput
    raise AttributeError(f"module 'attrkit.runs' has no attribute {name!r}")
