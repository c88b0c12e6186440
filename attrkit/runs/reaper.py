"""A watchdog that ends a local Ray instance's processes when the driver that started it dies (SIGKILL, OOM).

``ray.init()`` starts the GCS server, the raylet and two agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) below the driver. When the driver is killed, the raylet and GCS follow, but the
agents are re-parented to init and live on. :func:`start` launches this file as a small stdlib-only process in
its own session; every half second it records the driver's descendants that are Ray's (their command line names
ray; pid and start time), and once the
driver is gone it sends them SIGTERM, then SIGKILL to those still alive two seconds later. The start time
guards against a recycled pid. :func:`stop` ends the watchdog after a normal ``ray.shutdown()``.

Linux only (it reads ``/proc``); elsewhere :func:`start` returns None.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def start(driver: int | None = None):
    """Start the watchdog for ``driver`` (default: this process); returns its ``Popen`` or None."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc") or not sys.executable:
        return None
    try:
        return subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(driver or os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError:                    # no interpreter to start (frozen app): Ray's own clean-up only
        return None


def stop(proc) -> None:
    """End a watchdog started by :func:`start` (the driver shut Ray down itself)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()        # the name in (...) may hold spaces
    if fields[0] in ("Z", "X"):                       # a zombie or a dead process: nothing left to end
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every process below ``root`` (children, grandchildren, ...)."""
    parent: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                parent.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out, todo = {}, [root]
    while todo:
        for child in parent.get(todo.pop(), []):
            if child not in out:
                out[child] = starts[child]
                todo.append(child)
    return out


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False


def _alive(pid: int, start: int | None = None) -> bool:
    st = _stat(pid)
    return st is not None and (start is None or st[1] == start)


def watch(driver: int) -> int:
    """Record ``driver``'s descendants while it lives; end them once it is gone. Returns how many were ended."""
    me = os.getpid()
    known: dict[int, int] = {}
    while _alive(driver):
        known.update({p: s for p, s in descendants(driver).items() if p not in known and _is_ray(p)})
        known = {p: s for p, s in known.items() if p != me and _alive(p, s)}
        time.sleep(POLL_S)
    # read the command lines again: a child caught between fork and exec still showed the driver's own (which may
    # name ray), and only what runs as Ray's now is ended
    known = {p: s for p, s in known.items() if _alive(p, s) and _is_ray(p)}
    ended = 0
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0.0)):
        left = {p: s for p, s in known.items() if _alive(p, s)}
        for p in left:
            try:
                os.kill(p, sig)
                ended += sig == signal.SIGTERM
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline and any(_alive(p, s) for p, s in left.items()):
            time.sleep(0.1)
    return ended


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch(int(sys.argv[1]))
