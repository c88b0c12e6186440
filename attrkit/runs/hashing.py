"""Content hashes of many files, cheap on the second look: each file's bytes are hashed (BLAKE2b, 1 MiB blocks)
once, and the digest is kept in a SQLite table keyed by (absolute path, size, mtime in ns). A later call
``stat``s every file and re-reads only those whose size or modification time changed, so a folder of 100k
images costs one ``stat`` per file after the first run. Editing a file changes its mtime, so an edited image
of the same size gets a new digest (path + size alone would miss it).

The table lives at ``$ATTRKIT_CACHE/file_hashes.sqlite`` (``~/.cache/attrkit``); when that cannot be written,
digests are only kept for the process.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

_MEMORY: dict[tuple[str, int, int], str] = {}


def file_digest(path) -> str:
    """BLAKE2b-128 hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _db_path() -> Path:
    env = os.environ.get("ATTRKIT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "attrkit"
    return base / "file_hashes.sqlite"


def _connect():
    try:
        path = _db_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(path), timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, "
                    "digest TEXT)")
        return con
    except (OSError, sqlite3.Error):
        return None


def file_digests(paths) -> list[str]:
    """The content digest of each path (absolute or not), reusing cached digests of unchanged files."""
    paths = [os.path.abspath(p) for p in paths]
    stats = [os.stat(p) for p in paths]
    keys = [(p, st.st_size, st.st_mtime_ns) for p, st in zip(paths, stats)]
    con = _connect()
    known: dict[str, tuple[int, int, str]] = {}
    if con is not None:
        try:
            for i in range(0, len(paths), 900):                 # SQLite's limit on bound parameters
                chunk = paths[i:i + 900]
                rows = con.execute(f"SELECT path, size, mtime, digest FROM digests WHERE path IN "
                                   f"({','.join('?' * len(chunk))})", chunk).fetchall()
                known.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        except sqlite3.Error:
            con = None
    out, new = [], []
    for key in keys:
        p, size, mtime = key
        hit = known.get(p)
        digest = hit[2] if hit is not None and hit[:2] == (size, mtime) else _MEMORY.get(key)
        if digest is None:
            digest = file_digest(p)
            new.append((p, size, mtime, digest))
        _MEMORY[key] = digest
        out.append(digest)
    if con is not None:
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", new)
        except sqlite3.Error:
            pass
        finally:
            con.close()
    return out
