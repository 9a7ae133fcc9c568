"""An out-of-memory kill on purpose: `MemoryCap(pids, mb)` lets these processes allocate at most `mb` MiB more,
and a process that goes past it is SIGKILLed, as the kernel's OOM killer does in a container with a memory limit.

Where this machine lets coursekit make a memory cgroup (Linux, root, cgroup v1 or v2 with the memory controller),
the processes are moved into one of their own with that limit, and the KERNEL kills them: a real OOM kill. Where
it does not (a laptop without root, macOS), a watchdog thread here reads their RSS every few milliseconds and sends
the SIGKILL itself: it stands in for the kernel, and says so (`kind == "watchdog"`). Either way the worker sees the
same thing: a pool child gone by signal 9.

A cgroup counts only what its processes allocate after they join it (their earlier memory stays charged where it
was), so in both kinds the cap is "this much more than now". The cap stays with the processes given: a child the
worker forks to replace a killed one is not capped. (With `follow`, children forked to replace capped ones BEFORE
the first kill are capped too: a worker that recycles its children still meets the cap.)
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

MB = 1 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup")
_numbers = itertools.count(1)


@dataclass
class Kill:
    """One capped process killed: its pid, its RSS when last seen (MiB), and when (seconds since the cap began)."""

    pid: int
    rss_mb: float
    at: float
    by: str


def own_cgroup() -> tuple[Path, str] | None:
    """This process's memory cgroup folder and its version ("v1" or "v2"), or None when there is none to use."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (CGROUP_ROOT / "memory").is_dir():
            return CGROUP_ROOT / "memory" / path.lstrip("/"), "v1"
    for line in lines:
        if line.startswith("0::") and (CGROUP_ROOT / "cgroup.controllers").exists():
            folder = CGROUP_ROOT / line[3:].lstrip("/")
            if "memory" in (folder / "cgroup.subtree_control").read_text().split():
                return folder, "v2"
    return None


class MemoryCap:
    """`with MemoryCap(worker.children, mb=60) as cap:` ... `cap.kills`. `cap.kind` is "cgroup" (the kernel
    kills) or "watchdog" (this process kills, standing in for the kernel); `cap.how` says which in a sentence."""

    def __init__(self, pids, mb: float, interval: float = 0.01, prefer: str = "cgroup", follow=None):
        """`follow`: a callable giving the processes to cap now (a worker's `children`, say), asked until the first
        kill: a process it names that was not capped yet is capped from then on."""
        self.pids = [int(p) for p in pids]
        self._follow = follow
        self.mb = mb
        self.interval = interval
        self.kills: list[Kill] = []
        self.kind = "watchdog"
        self.folder: Path | None = None
        self._parent: Path | None = None
        self._begun = time.monotonic()
        self._baseline = {pid: self._rss(pid) for pid in self.pids}
        self._last = dict(self._baseline)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="coursekit-memory-cap")
        if prefer == "cgroup":
            self._into_cgroup()
        self._oom_kills = self._kernel_kills()
        self._thread.start()

    def limit_mb(self, pid: int) -> float | None:
        """The RSS (MiB) at which capped process `pid` is killed: what it held when capped, plus the cap."""
        start = self._baseline.get(int(pid))
        return None if start is None else round(start + self.mb, 1)

    @property
    def how(self) -> str:
        if self.kind == "cgroup":
            return (f"a memory cgroup of its own ({self.folder.name}) limits the child to {self.mb:g} MiB more: "
                    "the kernel's OOM killer sends the SIGKILL")
        return (f"no memory cgroup could be made here, so a watchdog in this notebook reads the child's RSS and "
                f"SIGKILLs it past {self.mb:g} MiB more: it stands in for the kernel's OOM killer")

    # -- the kernel's way ----------------------------------------------------------------------------------
    def _into_cgroup(self) -> None:
        found = own_cgroup()
        if found is None:
            return
        parent, version = found
        self._sweep(parent)
        folder = parent / f"coursekit-cap-{os.getpid()}-{next(_numbers)}"
        limit = str(int(self.mb * MB))
        try:
            folder.mkdir()
        except OSError:
            return
        try:
            if version == "v1":
                (folder / "memory.limit_in_bytes").write_text(limit)
                swap = folder / "memory.memsw.limit_in_bytes"  # with swap, the process would swap, not die
                if swap.exists():
                    try:
                        swap.write_text(limit)
                    except OSError:
                        pass
            else:
                (folder / "memory.max").write_text(limit)
                (folder / "memory.swap.max").write_text("0")
            for pid in self.pids:
                (folder / "cgroup.procs").write_text(str(pid))
        except OSError:
            self._leave(folder, parent)
            return
        self.kind, self.folder, self._parent = "cgroup", folder, parent

    def _kernel_kills(self) -> int:
        """How many processes the kernel killed in this cap's cgroup so far (0 for the watchdog)."""
        if self.folder is None:
            return 0
        for name in ("memory.oom_control", "memory.events"):
            try:
                for line in (self.folder / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except OSError:
                continue
        return 0

    @staticmethod
    def _sweep(parent: Path) -> None:
        """Remove the empty cgroups of caps whose owner died before closing them (a SIGKILLed kernel, say)."""
        for folder in parent.glob("coursekit-cap-*-*"):
            owner = folder.name.split("-")[2]
            if owner.isdigit() and not psutil.pid_exists(int(owner)):
                try:
                    folder.rmdir()
                except OSError:
                    pass

    @staticmethod
    def _leave(folder: Path, parent: Path) -> None:
        """Move whatever still runs in `folder` back to `parent`, then remove it."""
        try:
            for pid in (folder / "cgroup.procs").read_text().split():
                try:
                    (parent / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            folder.rmdir()
        except OSError:
            pass

    # -- the watchdog's way, and the record of kills ---------------------------------------------------------
    @staticmethod
    def _rss(pid: int) -> float:
        try:
            return psutil.Process(pid).memory_info().rss / MB
        except psutil.Error:
            return 0.0

    @staticmethod
    def _running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _adopt(self, alive: set[int]) -> None:
        """Cap the processes `follow` names that are new (a recycled child's replacement), until the first kill."""
        if self._follow is None or self.kills:
            return
        try:
            now = [int(p) for p in self._follow()]
        except Exception:  # the worker is going away: nothing new to cap
            return
        for pid in now:
            if pid in self._baseline or not self._running(pid):
                continue
            if self.kind == "cgroup":
                try:
                    (self.folder / "cgroup.procs").write_text(str(pid))
                except OSError:
                    continue  # gone already, or the cgroup refuses it: not capped
            self._baseline[pid] = self._last[pid] = self._rss(pid)
            self.pids.append(pid)
            alive.add(pid)

    def _watch(self) -> None:
        alive = set(self.pids)
        rounds = 0
        while (alive or (self._follow is not None and not self.kills)) and not self._stopping.is_set():
            if rounds % 5 == 0:
                self._adopt(alive)
            rounds += 1
            for pid in sorted(alive):
                if not self._running(pid):
                    alive.discard(pid)
                    if self.kind == "cgroup" and self._kernel_kills() > self._oom_kills:
                        self._oom_kills = self._kernel_kills()
                        self._killed(pid, "the kernel")
                    continue
                rss = self._rss(pid)
                if rss:
                    self._last[pid] = rss
                if self.kind == "watchdog" and rss > self._baseline[pid] + self.mb:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    alive.discard(pid)
                    self._killed(pid, "the watchdog")
            self._stopping.wait(self.interval)

    def _killed(self, pid: int, by: str) -> None:
        self.kills.append(Kill(pid, round(self._last.get(pid, 0.0), 1), round(time.monotonic() - self._begun, 3), by))

    def wait_for_kill(self, timeout: float) -> Kill | None:
        """The first kill, once it happened, or None after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self.kills and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.kills[0] if self.kills else None

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        if self.folder is not None:
            self._leave(self.folder, self._parent)

    def __enter__(self) -> "MemoryCap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
