"""The on-disk format of a data-set run: shards of attributions, a manifest, an errors file.

Layout of ``DIR``::

    manifest.json              format, configuration and its hash, sample/shard counts, completed shards
    shards/000000.npy          attribution values of shard 0, float32 [k, ...] (only the good samples)
    shards/000000.json         shard 0's record: dataset index and id of each sample, targets, labels,
                               model outputs, the method's info figures, seconds; written last = "complete"
    shards/000000.errors.json  bad records of shard 0 (only when it has any): index, id, reason
    errors.jsonl               all bad records of the completed shards, one JSON object a line

Every file is written to a temporary name in the same folder, flushed to disk and renamed with
``os.replace`` (atomic on POSIX), so a process killed at any moment leaves either a complete shard or none.
The shard's ``.json`` record is renamed into place after its values, so its presence marks the shard done;
the manifest's ``completed`` list is a summary refreshed as the run goes and rebuilt on resume.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..core.files import atomic_write  # noqa: F401  (kept importable from here)
from ..core.json_values import jsonable  # noqa: F401  (run records; kept importable from here)

FORMAT = "attrkit.run/1"
_SHARD_RE = re.compile(r"^(\d+)\.json$")


# ------------------------------------------------------------------------------------------ atomic files
def write_json(path: Path, obj) -> None:
    data = json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()
    atomic_write(path, lambda f: f.write(data))


def shard_name(k: int) -> str:
    return f"{k:06d}"


def write_shard(out, k: int, values: np.ndarray, record: dict, errors: list[dict]) -> None:
    """Write shard ``k``: values, then its errors (if any), then the record that marks it complete."""
    d = Path(out) / "shards"
    name = shard_name(k)
    atomic_write(d / f"{name}.npy", lambda f: np.save(f, np.ascontiguousarray(values), allow_pickle=False))
    err_path = d / f"{name}.errors.json"
    if errors:
        write_json(err_path, errors)
    elif err_path.exists():
        err_path.unlink()
    write_json(d / f"{name}.json", record)


# ----------------------------------------------------------------------------------------- configuration
def config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if a != b:
            sa, sb = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
            out.append(f"{key}: {sa[:80]} -> {sb[:80]}")
    return out


class RunStore:
    """Writer side of a run folder, held by the one driver process (workers only call :func:`write_shard`)."""

    def __init__(self, out):
        if out is None:
            raise ValueError("out= must name the folder where the run's shards and manifest are written")
        self.out = Path(out)
        self.shards_dir = self.out / "shards"
        self.manifest_path = self.out / "manifest.json"
        self._lock_file = None
        self._last_write = 0.0

    # -------------------------------------------------------------------------------------------- lock
    def lock(self) -> None:
        """Refuse a second live run on the same folder (an OS lock, released when the process dies)."""
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        f = open(self.out / ".lock", "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ValueError(f"another attrkit run is writing to {self.out} right now; wait for it to finish "
                             "or use another out= folder") from None
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ---------------------------------------------------------------------------------------- manifest
    def open(self, config: dict, describe: dict, n_samples: int, shard_size: int) -> dict:
        """Create the manifest, or check that the folder's existing run has the same configuration."""
        h = config_hash(config)
        n_shards = max(1, math.ceil(n_samples / shard_size))
        if self.manifest_path.exists():
            try:
                old = json.loads(self.manifest_path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{self.manifest_path} is unreadable ({err}); delete {self.out} to start over") \
                    from err
            if old.get("format") != FORMAT:
                raise ValueError(f"{self.out} holds something other than an attrkit run "
                                 f"(format {old.get('format')!r}); use another out= folder")
            if old.get("config_hash") != h:
                diff = _differences(old.get("config", {}), config)
                raise ValueError(
                    f"{self.out} already holds a run with a different configuration (hash "
                    f"{old.get('config_hash')} there, {h} now); changed: {'; '.join(diff) or 'unknown'}. "
                    "Re-run with the original settings to resume it, or choose a new out= folder "
                    "(or delete the old one) to start a new run.")
            self.manifest = old
            self.manifest["describe"] = describe
        else:
            if any(self.shards_dir.glob("*.json")):
                raise ValueError(f"{self.out} holds shards but no manifest.json; delete it or use another folder")
            self.manifest = {"format": FORMAT, "config_hash": h, "config": config, "describe": describe,
                             "n_samples": n_samples, "shard_size": shard_size, "n_shards": n_shards,
                             "completed": [], "n_done": 0, "n_errors": 0, "created": time.time()}
        self.clean_temporary()
        self.completed = completed_shards(self.out)
        self.save_manifest(force=True)
        return self.manifest

    def clean_temporary(self) -> int:
        """Delete temporary files left by a killed process (never a completed file)."""
        n = 0
        for p in list(self.shards_dir.glob("*.tmp-*")) + list(self.out.glob("*.tmp-*")):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
        return n

    def mark(self, summary: dict) -> None:
        self.completed[summary["shard"]] = {"n": summary["n"], "n_errors": summary["n_errors"]}
        self.save_manifest()

    def save_manifest(self, force: bool = False, interval: float = 1.0) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < interval:
            return
        m = self.manifest
        m["completed"] = sorted(self.completed)
        m["n_done"] = int(sum(v["n"] for v in self.completed.values()))
        m["n_errors"] = int(sum(v["n_errors"] for v in self.completed.values()))
        m["updated"] = time.time()
        write_json(self.manifest_path, m)
        self._last_write = now

    def write_errors(self) -> Path:
        """Rebuild ``errors.jsonl`` from the completed shards' error files (atomic)."""
        lines = [json.dumps(e) for e in iter_errors(self.out, self.completed)]
        data = ("\n".join(lines) + ("\n" if lines else "")).encode()
        path = self.out / "errors.jsonl"
        atomic_write(path, lambda f: f.write(data))
        return path


def completed_shards(out) -> dict[int, dict]:
    """``{shard: {"n", "n_errors"}}`` for every shard whose record and values are both on disk."""
    d = Path(out) / "shards"
    done = {}
    if not d.is_dir():
        return done
    for p in d.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and (d / f"{m.group(1)}.npy").exists():
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue                                      # cannot happen with atomic writes; recompute
            done[int(m.group(1))] = {"n": int(rec["n"]), "n_errors": int(rec.get("n_errors", 0))}
    return done


def iter_errors(out, shards) -> Iterator[dict]:
    d = Path(out) / "shards"
    for k in sorted(shards):
        p = d / f"{shard_name(k)}.errors.json"
        if p.exists():
            yield from json.loads(p.read_text())


# ------------------------------------------------------------------------------------------------ reader
class Shard:
    """One completed shard, read on demand: ``values`` (memory-mapped), ``ids``, ``index``, ``targets``,
    ``labels``, ``outputs``, ``info``, ``seconds``."""

    def __init__(self, out: Path, k: int):
        self.k = k
        self._npy = out / "shards" / f"{shard_name(k)}.npy"
        self.record = json.loads((out / "shards" / f"{shard_name(k)}.json").read_text())

    def __len__(self) -> int:
        return int(self.record["n"])

    @property
    def values(self):
        """``[k, ...]`` values; for a model with several inputs a tuple/dict of ``[k, *shape]`` per input."""
        v = torch.from_numpy(np.load(self._npy, mmap_mode="r", allow_pickle=False).copy())
        lay = self.record.get("layout")
        if lay is None or v.dim() != 2:
            return v
        parts, o = [], 0
        for shape in lay["shapes"]:
            size = int(np.prod(shape)) if shape else 1
            parts.append(v[:, o:o + size].reshape([v.shape[0]] + list(shape)))
            o += size
        return dict(zip(lay["names"], parts)) if lay["kind"] == "dict" else tuple(parts)

    def __getattr__(self, name: str) -> Any:
        rec = self.__dict__.get("record", {})
        if name in ("ids", "index", "targets", "labels", "outputs", "info", "seconds", "seed"):
            v = rec.get(name)
            if name in ("index", "labels", "outputs") and v is not None:
                return torch.tensor(v)
            if name == "targets" and isinstance(v, list):
                return torch.tensor(v)
            return v
        raise AttributeError(name)


class Run:
    """A run folder read lazily (``ak.load_run(DIR)``).

    ``len(run)``: attributions on disk. ``iter_values()`` yields one shard's values at a time (so
    ``ak.global_importance(run)`` streams); ``values()`` loads them all. ``ids``, ``index``, ``targets``,
    ``outputs``, ``labels`` concatenate the shards' records in dataset order; ``errors()`` lists bad records.
    """

    def __init__(self, out):
        self.out = Path(out)
        path = self.out / "manifest.json"
        if not path.exists():
            raise ValueError(f"{out} is not an attrkit run folder (no manifest.json)")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path} has format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self._done = completed_shards(self.out)
        self.stats: dict = {}

    # ------------------------------------------------------------------------------------- summary
    config = property(lambda self: self.manifest["config"])
    method = property(lambda self: self.manifest["config"]["method"])
    n_samples = property(lambda self: int(self.manifest["n_samples"]))
    n_shards = property(lambda self: int(self.manifest["n_shards"]))
    completed = property(lambda self: sorted(self._done))
    missing = property(lambda self: [k for k in range(self.n_shards) if k not in self._done])
    complete = property(lambda self: len(self._done) == self.n_shards)
    n_errors = property(lambda self: int(sum(v["n_errors"] for v in self._done.values())))

    def __len__(self) -> int:
        return int(sum(v["n"] for v in self._done.values()))

    def __repr__(self) -> str:
        return (f"Run({str(self.out)!r}: method={self.method!r}, {len(self)} attributions in "
                f"{len(self._done)}/{self.n_shards} shards, {self.n_errors} bad records)")

    # -------------------------------------------------------------------------------------- reading
    def shard(self, k: int) -> Shard:
        if k not in self._done:
            raise ValueError(f"shard {k} of {self.out} is not complete (completed: {len(self._done)} of "
                             f"{self.n_shards}); resume the run to compute it")
        return Shard(self.out, k)

    def iter_shards(self) -> Iterator[Shard]:
        for k in self.completed:
            yield Shard(self.out, k)

    def iter_values(self) -> Iterator[torch.Tensor]:
        """Each non-empty shard's values ``[k, ...]`` in dataset order, one shard in memory at a time."""
        for s in self.iter_shards():
            if len(s):
                yield s.values

    def values(self) -> torch.Tensor:
        """All values ``[len(run), ...]`` in dataset order (loads everything)."""
        parts = list(self.iter_values())
        if not parts:
            raise ValueError(f"{self.out} holds no attributions yet")
        if isinstance(parts[0], dict):
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if isinstance(parts[0], tuple):
            return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))
        return torch.cat(parts)

    def _gather(self, key: str) -> list:
        out: list = []
        for s in self.iter_shards():
            v = s.record.get(key)
            if v is not None:
                out.extend(v if isinstance(v, list) else [v] * len(s))
        return out

    @property
    def ids(self) -> list[str]:
        return self._gather("ids")

    @property
    def index(self) -> torch.Tensor:
        return torch.tensor(self._gather("index"), dtype=torch.long)

    @property
    def targets(self):
        t = self._gather("targets")
        return torch.tensor(t) if t and not isinstance(t[0], str) else t

    @property
    def outputs(self) -> torch.Tensor:
        return torch.tensor(self._gather("outputs"))

    @property
    def labels(self) -> torch.Tensor | None:
        lab = self._gather("labels")
        return torch.tensor(lab) if lab else None

    def errors(self) -> list[dict]:
        """Bad records of the completed shards: ``{"index", "id", "reason", "shard"}``."""
        return list(iter_errors(self.out, self._done))

    def attribution(self, shard: int | None = None):
        """An :class:`~attrkit.Attribution` of one shard (or of the whole run: loads everything)."""
        from ..attribution import Attribution
        if shard is not None:
            s = self.shard(shard)
            vals, outs, tg = s.values, s.outputs, s.targets
        else:
            vals, outs, tg = self.values(), self.outputs, self.targets
        cfg = self.config
        return Attribution(values=vals, method=cfg["method"], target=tg, layer=cfg.get("layer"),
                           baseline=cfg.get("options", {}).get("baseline"), outputs=outs,
                           info={"run": str(self.out)})
