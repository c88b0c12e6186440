"""No process outlives a SIGKILLed driver (issue 17): the watchdog of attrkit/runs/reaper.py ends what the driver
started (Ray's agents are re-parented to init and would live on)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Ray watchdog finds processes through /proc, which only Linux has")

DRIVER = textwrap.dedent("""
    import importlib.util, os, subprocess, sys, time
    spec = importlib.util.spec_from_file_location("reaper", {root!r} + "/attrkit/runs/reaper.py")
    reaper = importlib.util.module_from_spec(spec)     # the file alone: no torch import, a fast test
    spec.loader.exec_module(reaper)
    w = reaper.start()
    # like Ray's agents: a process in its own session, so the driver's death does not reach it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "ray::FakeAgent"],
                             start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "user-daemon"],
                             start_new_session=True)
    # a fork that execs only after the watchdog has seen it: until then its command line is this driver's (which
    # names ray::FakeAgent), after it a user's daemon that must live on
    late = os.fork()
    if late == 0:
        os.setsid()
        time.sleep(1.2)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "user-daemon"])
    print(child.pid, other.pid, late, w.pid, flush=True)
    time.sleep(120)
""")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_watchdog_ends_the_ray_processes_of_a_killed_driver_only(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER.format(root=root)], stdout=subprocess.PIPE, text=True)
    child, other, late, watchdog = (int(v) for v in proc.stdout.readline().split())
    try:
        time.sleep(2.0)                                  # the watchdog polls every 0.5 s; ``late`` execs at 1.2 s
        assert _alive(child) and _alive(watchdog)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (_alive(child) or _alive(watchdog)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the driver's Ray process outlived it"
        assert not _alive(watchdog)
        assert _alive(other), "a process that is not Ray's was ended"
        assert _alive(late), "a process seen between fork and exec (the driver's command line) was ended"
    finally:
        for pid in (child, other, late, watchdog):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


RAY_DRIVER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from attrkit.runs.ray_backend import ensure_ray
    from attrkit.runs.reaper import descendants
    ray, owned = ensure_ray(1)
    time.sleep(1.0)
    print(" ".join(str(p) for p in descendants(os.getpid())), flush=True)
    time.sleep(120)
""")


@pytest.mark.slow
def test_no_ray_process_outlives_a_sigkilled_driver():
    pytest.importorskip("ray")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", RAY_DRIVER.format(root=root)], stdout=subprocess.PIPE,
                            text=True, env=env)
    pids = [int(p) for p in proc.stdout.readline().split()]
    try:
        assert len(pids) >= 4                             # gcs, raylet, agents, watchdog, ...
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:80] for p in pids if _alive(p)]
        assert not left, left
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
