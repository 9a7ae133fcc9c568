"""coursekit.oom.MemoryCap: a process that allocates past its cap dies by SIGKILL, from the kernel (a memory cgroup)
or from the watchdog that stands in for it; one that stays under lives; nothing is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from coursekit.oom import MemoryCap, own_cgroup

# allocates `mb` MiB in 4 MiB pieces once it reads a line, then waits to be told to exit
GREEDY = """
import sys, time
sys.stdin.readline()
held = []
for _ in range(int(sys.argv[1]) // 4):
    held.append(b"x" * (4 << 20)); time.sleep(0.01)
print("done", flush=True)
sys.stdin.readline()
"""


def greedy(mb: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GREEDY, str(mb)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def kinds() -> list[str]:
    usable = own_cgroup() is not None and os.geteuid() == 0
    return ["watchdog", pytest.param("cgroup", marks=pytest.mark.skipif(not usable, reason="no memory cgroup here"))]


@pytest.mark.parametrize("kind", kinds())
def test_past_the_cap_the_process_is_killed_by_signal_9(kind):
    proc = greedy(80)
    try:
        with MemoryCap([proc.pid], mb=30, prefer=kind) as cap:
            assert cap.kind == kind and (kind in cap.how)
            proc.stdin.write("go\n"); proc.stdin.flush()
            assert proc.wait(timeout=15) == -signal.SIGKILL
            kill = cap.wait_for_kill(3)
        assert kill is not None and kill.pid == proc.pid
        assert kill.by == ("the kernel" if kind == "cgroup" else "the watchdog")
        if cap.folder is not None:
            assert not cap.folder.exists(), "the cap's cgroup outlived it"
    finally:
        proc.kill()


@pytest.mark.parametrize("kind", kinds())
def test_under_the_cap_the_process_lives(kind):
    proc = greedy(12)
    try:
        with MemoryCap([proc.pid], mb=40, prefer=kind) as cap:
            proc.stdin.write("go\n"); proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"
            assert proc.poll() is None and cap.kills == []
        assert cap.folder is None or not cap.folder.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kind", kinds())
def test_follow_caps_a_replacement_until_the_first_kill(kind):
    """A worker that recycles its children forks new ones the cap was not given: with `follow`, a process named
    later is capped too (08.oom's check relies on it); after the first kill, a new one is left alone, so that a
    redelivered task can run to its end."""
    first, second, third = greedy(8), greedy(80), greedy(80)
    current = [first.pid]
    try:
        with MemoryCap([first.pid], mb=30, prefer=kind, follow=lambda: list(current)) as cap:
            first.stdin.write("go\n"); first.stdin.flush()
            assert first.stdout.readline().strip() == "done"
            current[:] = [second.pid]  # the first child is recycled, the second forked in its place
            deadline = time.monotonic() + 5
            while second.pid not in cap.pids and time.monotonic() < deadline:
                time.sleep(0.01)
            assert second.pid in cap.pids, "the replacement was not capped"
            second.stdin.write("go\n"); second.stdin.flush()
            assert second.wait(timeout=15) == -signal.SIGKILL
            assert cap.wait_for_kill(3).pid == second.pid
            current[:] = [third.pid]  # forked after the kill: not capped
            time.sleep(0.3)
            third.stdin.write("go\n"); third.stdin.flush()
            assert third.stdout.readline().strip() == "done"
            assert third.pid not in cap.pids and len(cap.kills) == 1
    finally:
        for proc in (first, second, third):
            proc.kill()
            proc.wait()
