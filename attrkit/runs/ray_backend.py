"""The Ray backend: ``workers`` actors, one model each, shards streamed to whichever actor is free.

Ray is imported lazily (``pip install attrkit[ray]``). With ``RAY_ADDRESS`` set the run joins that cluster;
otherwise, when no Ray instance is running in this process, a local one is started
(``num_cpus=workers * cpus_per_worker``, no dashboard) and shut down at the end; a watchdog
(:mod:`attrkit.runs.reaper`) ends its processes if the driver is killed before that. In a Ray instance that
outlives the run, ``keep_workers=True`` keeps the actors for the next run (their model and data are dropped;
each keeps its CPU reserved until :func:`release_workers` or ``ray.shutdown()``). Workers write their
shards straight to ``out`` (which must therefore be shared storage on a multi-machine cluster); the driver
only receives each shard's small summary and keeps the manifest.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Iterable

from .worker import Plan, ShardWorker


def import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend='ray' needs Ray; install it with `pip install 'attrkit[ray]'` "
                          "(on every machine of the cluster)") from err
    return ray


def ensure_ray(workers: int | None, cpus_per_worker: float = 1.0) -> tuple[object, bool]:
    """(ray module, whether this call started/connected Ray and should shut it down afterwards)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level=logging.WARNING)
    else:
        global _REAPER
        n = max(1, int(round((workers or os.cpu_count() or 1) * cpus_per_worker)))
        ray.init(num_cpus=n, include_dashboard=False, logging_level=logging.WARNING)
        from . import reaper
        reaper.stop(_REAPER)
        _REAPER = reaper.start()          # ends Ray's processes should this driver be killed (SIGKILL, OOM)
    return ray, True


_REAPER = None


def _shutdown(ray) -> None:
    """``ray.shutdown()`` of a Ray instance this module started, and its watchdog with it."""
    global _REAPER
    ray.shutdown()
    from . import reaper
    reaper.stop(_REAPER)
    _REAPER = None


def default_workers(ray, cpus_per_worker: float) -> int:
    cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
    return max(1, int(cpus // cpus_per_worker))


class PoolWorker:
    """Body of the Ray actor: holds one :class:`ShardWorker` (one model) for the current run.

    Actors outlive a run while the Ray instance does (a second run in the same session skips the seconds
    of process start and imports); :meth:`reset` drops the model and the data after each run."""

    def __init__(self):
        self.worker = None

    def setup(self, factory, source, plan) -> str:
        self.worker = ShardWorker(factory, source, plan)
        return self.worker.where

    def run(self, k: int) -> dict:
        return self.worker.run(k)

    def reset(self) -> None:
        self.worker = None


_POOL: dict = {}      # (job id, cpus, gpus) -> [actor handles]


def _actors(ray, n: int, cpus: float, gpus: float) -> list:
    key = (ray.get_runtime_context().get_job_id(), cpus, gpus)
    for k in [k for k in _POOL if k[0] != key[0]]:
        del _POOL[k]                     # handles of an earlier Ray session are dead
    pool = _POOL.setdefault(key, [])
    if len(pool) < n:
        Actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(PoolWorker)
        pool.extend(Actor.remote() for _ in range(n - len(pool)))
    return pool[:n]


def _forget(ray, actors) -> None:
    for key, pool in _POOL.items():
        _POOL[key] = [a for a in pool if a not in actors]
    for a in actors:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001 - best effort clean-up of our own actors
            pass


def release_workers() -> int:
    """Kill the actors kept by ``run(..., keep_workers=True)`` (each holds its CPU while it lives)."""
    n = sum(len(p) for p in _POOL.values())
    if n:
        ray = import_ray()
        for pool in list(_POOL.values()):
            _forget(ray, list(pool))
    _POOL.clear()
    return n


def run_ray(plan: Plan, factory, source, shards: Iterable[int], on_done: Callable[[dict], None],
            workers: int | None = None, cpus_per_worker: float = 1.0, in_flight: int = 2,
            keep_workers: bool = False) -> dict:
    """Compute ``shards`` on Ray actors; ``on_done(summary)`` in the driver as each shard lands.

    Each actor holds ``in_flight`` shards queued so it never waits for the driver. The source, the model
    factory and the plan go to the object store once and reach each actor once (``setup``). With
    ``keep_workers`` (and a Ray instance that outlives the run) the actors stay for the next run."""
    queue = list(shards)
    t0 = time.perf_counter()
    ray, owned = ensure_ray(workers, cpus_per_worker)
    actors: list = []
    ok = False
    try:
        n_workers = workers or default_workers(ray, cpus_per_worker)
        n_workers = max(1, min(n_workers, len(queue))) if queue else 0
        gpus = 1 if plan.device and str(plan.device).startswith("cuda") else 0
        actors = _actors(ray, n_workers, cpus_per_worker, gpus)
        refs = ray.put(factory), ray.put(source), ray.put(plan)
        for a in actors:
            a.setup.remote(*refs)                # actor tasks run in submission order: setup, then shards
        pending: dict = {}

        def submit(actor) -> None:
            if queue:
                pending[actor.run.remote(queue.pop(0))] = actor

        for _ in range(in_flight):
            for a in actors:
                submit(a)
        startup = None
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(done[0])
            summary = ray.get(done[0])          # re-raises a worker's exception here
            if startup is None:
                startup = time.perf_counter() - t0 - summary["seconds"]
            on_done(summary)
            submit(actor)
        ok = True
        return {"workers": n_workers, "ray_startup_s": startup, "ray_started_here": owned}
    finally:
        if owned:
            _POOL.clear()
            _shutdown(ray)
        elif not ok or not keep_workers:
            _forget(ray, actors)                # a failed run may leave actors busy or broken
        else:
            ray.get([a.reset.remote() for a in actors])
