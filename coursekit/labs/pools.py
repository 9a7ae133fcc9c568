"""Chapter 09: pools. One task that waits (IO-bound) and one that computes (CPU-bound), to run on prefork, threads,
gevent and solo workers side by side.

`fetch` stands for a network call: it sleeps, which on a gevent worker started with `-P gevent` is gevent's sleep
(the `celery` command patched the standard library before anything else ran). `crunch` is pure-Python arithmetic
with a fixed amount of work: no sleep, no IO, nothing that releases the GIL or yields to another greenlet. Each
reports the process and the thread (or greenlet) that ran it, its start and end (Unix time), and for `crunch` the
CPU time its own thread used, so that a lesson reads how much CPU a pool really got.
"""
from __future__ import annotations

import os
import threading
import time

from . import lab_app

app = lab_app(__name__)

WORK = 1_000_000
"""Loop iterations in one unit of crunch's work: about 0.05-0.08 s of one core on this course's machines."""


def lane() -> dict:
    """Who runs this task: the process and, inside it, the thread or greenlet (its id, unique while it runs)."""
    return {"pid": os.getpid(), "lane": threading.get_ident()}


def arithmetic(units: int) -> int:
    """`units` x WORK loop iterations of integer arithmetic, in Python bytecode: it holds the GIL throughout."""
    total = 0
    for i in range(units * WORK):
        total = (total + i * i) % 1_000_003
    return total


@app.task
def fetch(item, seconds=0.25):
    """Wait `seconds` as a network call would, doing no work meanwhile."""
    begun = time.time()
    time.sleep(seconds)
    return {"item": item, "started": begun, "ended": time.time(), **lane()}


@app.task
def crunch(units=4):
    """Compute for `units` units of work (see WORK) and report the CPU time this thread spent on it."""
    begun, cpu = time.time(), time.thread_time()
    arithmetic(units)
    return {"units": units, "started": begun, "ended": time.time(), "cpu": time.thread_time() - cpu, **lane()}


@app.task(soft_time_limit=0.5, time_limit=1)
def stuck(seconds=3.0):
    """A call that hangs for `seconds`, with limits far shorter: soft 0.5 s, hard 1 s."""
    begun = time.time()
    time.sleep(seconds)
    return {"slept": seconds, "started": begun, "ended": time.time(), **lane()}
