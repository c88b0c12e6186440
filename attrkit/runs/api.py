"""``ak.run``: explain a whole data set into a resumable shard store; ``ak.load_run``: read one back."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
import time
import warnings

import numpy as np
import torch

from .factory import ModelFactory, model_id
from .sources import ImageFolderSource, TableSource, as_source
from .store import FORMAT, Run, RunStore
from .worker import Plan

BACKENDS = ("local", "ray")


class BadRecordsWarning(UserWarning):
    """Some records (corrupt images, malformed rows) were skipped; they are listed in ``errors.jsonl``."""


class BadRecordsError(ValueError):
    """Raised by ``run(..., strict=True)`` when any record was bad (the run itself is complete on disk)."""
    exit_status = 3                     # the command line's exit status for it


def run(model_factory, dataset, method: str = "integrated_gradients", out=None, *, backend: str = "local",
        batch_size: int | None = None, shard_size: int = 256, workers: int | None = None, seed: int = 0,
        target=None, layer=None, noise=None, max_memory: int | None = None, device: str | None = None,
        keep_workers: bool = False, strict: bool = False, progress: bool | None = None, **method_args) -> Run:
    """Explain every sample of ``dataset`` with ``method`` and store the attributions in shards under ``out``.

    model_factory: a zero-argument callable returning the model, a ``"package.module:factory"`` string, the
        path of a model file saved with ``attrkit.train.save``, or an ``nn.Module``. The model is built once
        per worker, never pickled per batch.
    dataset: tensor ``[N, ...]``, ``(x, y)`` tensors, an attrkit ``Dataset``, a ``TensorDataset``, a folder of
        PNG/JPEG images, a ``.csv`` / ``.parquet`` table, ``.npz``/``.npy``, or a source object
        (:class:`ImageFolderSource` with ``size``/``mean``/``std``; :class:`TableSource` with ``columns``,
        ``target``, ``id_column``).
    out: the run folder. Re-running the same call after a crash computes only the shards not yet on disk;
        a different configuration in the same folder is refused.
    backend: ``"local"`` (this process) or ``"ray"`` (``workers`` actors, one model each; local Ray started
        when none runs, the cluster at ``RAY_ADDRESS`` otherwise). keep_workers (Ray only): keep the actors
        alive for the next run in a Ray instance you started (skips their start-up; each holds a CPU until
        ``attrkit.runs.release_workers()`` or ``ray.shutdown()``).
    shard_size: samples per shard = per ``ak.explain`` call; part of the configuration (with the seed, it
        fixes each shard's seed). batch_size / max_memory: rows per model call inside ``explain`` (results do
        not depend on them, so they may change between resumes).
    seed: run seed; shard ``k`` uses ``SeedSequence([seed, k])``. target: None (predicted class), an int,
        ``"label"`` (the data set's labels) or a callable. layer / noise / method_args: as for ``ak.explain`` (``forward_args``/``forward_kwargs`` too: tensors with one row per
        sample of the data set are cut to each shard's samples).
    strict: raise :class:`BadRecordsError` at the end when any record was bad (else a warning).
    progress: tqdm bar with throughput (None: only on a terminal).

    Returns the :class:`Run` (``ak.load_run(out)``) with ``run.stats`` describing this call.
    """
    from ..registry import validate
    if out is None:
        raise ValueError("out= must name the folder where the run's shards and manifest are written")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer (every shard's seed is derived from it), got {seed!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if backend == "local" and workers not in (None, 1):
        raise ValueError(f"the local backend runs in this process with one model; use backend='ray' for "
                         f"workers={workers}")
    from ..core.inputs import check_forward_args
    forward = {k: method_args[k] for k in ("forward_args", "forward_kwargs") if k in method_args}
    if forward:                         # passed to explain, per-sample rows cut to each shard (worker.shard_options)
        check_forward_args(forward.get("forward_args"), forward.get("forward_kwargs"))
    spec = validate(method, layer=layer, noise=noise, **{k: v for k, v in method_args.items() if k not in forward})
    source = as_source(dataset)
    if isinstance(target, str) and target == "label" and not _has_labels(source):
        raise ValueError("target='label' needs labels in the data set (y tensor, class sub-folders, or a table's "
                         "target column)")
    factory = ModelFactory(model_factory)
    model = factory.build()
    layer_name = _layer_name(model, layer)
    n = len(source)
    if n == 0:
        raise ValueError("the data set has no samples")
    config = {"format": FORMAT, "method": spec.name, "options": _canonical(method_args),
              "target": _canonical(target), "layer": layer_name, "noise": _canonical(noise),
              "model": model_id(model, factory), "data": source.fingerprint(), "n_samples": n,
              "shard_size": shard_size, "seed": int(seed)}
    describe = {"model_factory": factory.name(), "data": source.describe()}
    plan = Plan(out=str(Path(out).resolve()), method=spec.name, n=n, shard_size=shard_size, seed=int(seed),
                options=dict(method_args), target=target, layer=layer_name, noise=noise, batch_size=batch_size,
                max_memory=max_memory, device=device)
    store = RunStore(out)
    store.lock()
    t0 = time.perf_counter()
    stats = {"backend": backend, "computed_shards": 0, "computed_samples": 0, "new_errors": 0}
    try:
        store.open(config, describe, n, shard_size)
    except BaseException:
        store.unlock()
        raise
    try:
        missing = [k for k in range(plan.n_shards) if k not in store.completed]
        stats["skipped_shards"] = plan.n_shards - len(missing)
        done_before = sum(plan.bounds(k)[1] - plan.bounds(k)[0] for k in store.completed)
        bar = _bar(progress, n, done_before, spec.name, source)

        def on_done(summary: dict) -> None:
            store.mark(summary)
            stats["computed_shards"] += 1
            stats["computed_samples"] += summary["n"] + summary["n_errors"]
            stats["new_errors"] += summary["n_errors"]
            if bar is not None:
                bar.update(summary["n"] + summary["n_errors"])
                if stats["new_errors"]:
                    bar.set_postfix(bad=stats["new_errors"], refresh=False)

        try:
            if backend == "local":
                extra = _local(plan, factory, source, missing, on_done, model)
            else:
                from .ray_backend import run_ray
                extra = run_ray(plan, factory, source, missing, on_done, workers=workers, keep_workers=keep_workers)
        finally:
            if bar is not None:
                bar.close()
        stats.update(extra)
    finally:
        store.save_manifest(force=True)
        store.write_errors()
        store.unlock()
    seconds = time.perf_counter() - t0
    stats["seconds"] = seconds
    stats["samples_per_s"] = stats["computed_samples"] / seconds if seconds > 0 else float("nan")
    result = Run(out)
    result.stats = stats
    if result.n_errors:
        msg = (f"{result.n_errors} bad record(s) in the data set were skipped; they are listed with the reason "
               f"in {store.out / 'errors.jsonl'}")
        if strict:
            raise BadRecordsError(msg + " (strict mode: failing)")
        warnings.warn(msg, BadRecordsWarning, stacklevel=2)
    return result


def load_run(out) -> Run:
    """Open a run folder lazily: ``len(run)``, ``run.iter_values()``, ``run.values()``, ``run.ids``,
    ``run.errors()``; ``ak.global_importance(run)`` streams over the shards."""
    return Run(out)


def _local(plan, factory, source, missing, on_done, model) -> dict:
    from .local import run_local
    return run_local(plan, factory, source, missing, on_done, model=model)


def _bar(progress, total: int, initial: int, method: str, source):
    show = progress if progress is not None else sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm
    unit = "img" if isinstance(source, ImageFolderSource) or getattr(source, "x", np.zeros((1, 1))).ndim >= 4 \
        else ("row" if isinstance(source, TableSource) else "sample")
    return tqdm(total=total, initial=initial, unit=unit, desc=f"attrkit run {method}", smoothing=0.1)


def _has_labels(source) -> bool:
    return any(getattr(source, k, None) is not None for k in ("y", "labels")) or \
        (isinstance(source, TableSource) and source.target is not None)


def _layer_name(model, layer):
    if layer is None or isinstance(layer, str):
        return layer
    from ..core.modules import resolve_layer
    return resolve_layer(model, layer)[0]


def _canonical(v):
    """A JSON-able, order-stable description of an option, tensors replaced by their content hash."""
    if isinstance(v, (torch.Tensor, np.ndarray)):
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        h = hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=12).hexdigest()
        return {"array": list(a.shape), "dtype": str(a.dtype), "blake2b": h}
    if isinstance(v, dict):
        return {str(k): _canonical(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(v):
        base = getattr(v, "func", v)
        return f"callable:{getattr(base, '__module__', '?')}.{getattr(base, '__qualname__', type(base).__name__)}"
    return repr(v)
