"""Files written whole or not at all: run shards, manifests, model and weight files."""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def atomic_write(path, write, *, mode: int | None = None) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path`` (``<name>.tmp-<pid>-<random>``), flush and
    fsync it, set its permission bits to ``mode`` (None: the umask's default), then ``os.replace`` it onto
    ``path``: a reader, or a process killed midway, sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
