"""Chapter 08: memory. Tasks that leak, that peak, and that a memory cap kills.

`render` keeps every page it renders in a module-level cache that nothing empties: the classic leak, since a pool
child lives for many tasks and a module is imported once per child. `peak` allocates a lot for a moment and frees
it: the child's resident memory falls back, but its PEAK (ru_maxrss, what --max-memory-per-child reads) does not.
`load_batch` grows step by step, so a memory cap (coursekit.oom) catches it mid-way, as the kernel would.
Each returns the child's pid, its RSS and its peak RSS as the task ends, measured in the child itself.
"""
from __future__ import annotations

import resource
import time

import psutil

from ..ledger import Ledger
from . import lab_app, ran_here

app = lab_app(__name__)

MB = 1 << 20
CHUNK_MB = 4
"""Memory is allocated in pieces of this size, a few ms apart, so that RSS climbs instead of jumping."""
CHUNK_GAP_S = 0.02
"""The pause between two pieces in load_batch: 4 MiB every 20 ms, so that a recorder sampling every 50 ms sees
the climb towards a memory cap before the kill (at 5 ms a piece, a 40 MiB cap was hit between two samples)."""

_cache: list[bytes] = []
"""The leak: one entry per page rendered in this process, kept until the process ends."""


def filled(mb: int) -> bytes:
    """`mb` MiB that really occupy memory: every page written (a zeroed allocation may not be backed yet)."""
    return b"\x01" * (mb * MB)


def memory_now() -> dict:
    """This process's resident memory and its peak so far, in MiB; the peak as the kernel's ru_maxrss (KiB on
    Linux), the figure billiard compares with --max-memory-per-child."""
    return {"rss_mb": round(psutil.Process().memory_info().rss / MB, 1),
            "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **ran_here()}


def running(pid: int) -> bool:
    """Whether `pid` is a running process: an exited pool child that its worker has not reaped yet (a zombie) is
    not, though it is still listed among the worker's children."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def grow(page, mb: int, seconds: float = 0.05) -> dict:
    """Render `page`, keeping `mb` MiB of it in the module-level cache for good: the leak."""
    _cache.append(filled(mb))
    time.sleep(seconds)
    return {"page": page, "cached_mb": len(_cache) * mb, **memory_now()}


def hold(mb: int, seconds: float = 0.3) -> dict:
    """Use `mb` MiB for `seconds`, then free it all: RSS falls back, the peak stays."""
    held = [filled(CHUNK_MB) for _ in range(max(1, mb // CHUNK_MB))]
    time.sleep(seconds)
    measured = memory_now()
    del held
    return measured


def load_batch(batch, mb: int, ledger: str = "batches", seconds: float = 0.2) -> dict:
    """Import `batch`, which needs `mb` MiB, taken a piece at a time; its side effect, written to the ledger
    `ledger` once the whole batch is in memory, is the witness that it ran to the end."""
    held = []
    for _ in range(max(1, mb // CHUNK_MB)):
        held.append(filled(CHUNK_MB))
        time.sleep(CHUNK_GAP_S)
    time.sleep(seconds)
    Ledger(ledger).write(batch, mb=mb)
    measured = memory_now()
    del held
    return {"batch": batch, **measured}


@app.task
def render(page, mb=3):
    return grow(page, mb)


@app.task
def peak(mb=80):
    return hold(mb)


@app.task
def import_batch(batch, mb=8):
    return load_batch(batch, mb)


@app.task
def click(page):
    """A task whose result nobody reads: stored anyway unless ignore_result says otherwise."""
    return {"page": page, **ran_here()}


@app.task
def rows(n):
    """A task that returns a table of `n` rows: the whole table is stored as its result."""
    return [{"row": i, "label": f"item {i:06d}", "value": i * 0.5} for i in range(n)]


@app.task(ignore_result=True)
def quiet_click(page):
    return {"page": page, **ran_here()}


def gate_key(name: str) -> str:
    """The Redis key whose existence opens the gate `name` (namespaced, like every key the course writes)."""
    from .. import namespace

    return f"{namespace.prefix()}gate:{name}"


def open_gate(name: str) -> None:
    """Let the `gated` task waiting on `name` end. The key expires by itself a minute later."""
    import redis

    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        client.set(gate_key(name), 1, px=60_000)


@app.task
def gated(name, limit=20.0):
    """Keeps its pool child busy until the notebook opens the gate `name` (at most `limit` s): meanwhile the worker
    holds what it reserved, whatever the machine's load."""
    import redis

    deadline = time.monotonic() + limit
    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        while not client.exists(gate_key(name)) and time.monotonic() < deadline:
            time.sleep(0.01)
    return ran_here()
