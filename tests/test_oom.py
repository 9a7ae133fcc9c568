"""coursekit.oom.MemoryCap: a process that allocates past its cap dies by SIGKILL, from the kernel (a memory cgroup)
or from the watchdog that stands in for it; one that stays under lives; nothing is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

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
