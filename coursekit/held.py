"""What each worker holds while tasks run, as `inspect()` reports it: `active()` (running in a pool process) and
`reserved()` (taken from the broker, waiting in the worker's memory for a free process). One look shows one
moment, so `sample` looks at an interval while the tasks run, and `stretches` condenses the looks into the
periods in which nothing changed."""
from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd

from .errors import WorkerError
from .worker import Worker, short_name

INSPECT_TIMEOUT_S = 1.0
"""A worker busy in its main process still answers within milliseconds; one that stays silent for a second is
counted as holding nothing in that look."""


def look(app, workers: list[Worker]) -> dict[str, dict[str, int]]:
    """Each worker's short name -> how many tasks it runs and how many it holds reserved, right now. The two
    questions are asked one after the other, a few milliseconds apart."""
    nodes = [w.nodename for w in workers]
    inspector = app.control.inspect(destination=nodes, timeout=INSPECT_TIMEOUT_S, limit=len(nodes))
    active, reserved = inspector.active() or {}, inspector.reserved() or {}
    return {short_name(n): {"running": len(active.get(n, [])), "reserved": len(reserved.get(n, []))} for n in nodes}


def sample(app, workers: list[Worker], until: Callable[[], bool], clock: Callable[[], float] = time.monotonic,
           every: float = 0.1, timeout: float = 30.0) -> pd.DataFrame:
    """Look at the workers every `every` s until `until()` is true (at most `timeout` s): one row per look and
    worker, with columns t (from `clock`, e.g. a recorder's `now`), worker, running, reserved."""
    rows, deadline = [], time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise WorkerError(f"the tasks were not done after {timeout:.0f} s of sampling",
                              fix="check that the workers consume the queue the tasks were sent to")
        t = clock()
        rows += [{"t": t, "worker": name, **counts} for name, counts in look(app, workers).items()]
        time.sleep(every)
    return pd.DataFrame(rows, columns=["t", "worker", "running", "reserved"])


def stretches(samples: pd.DataFrame) -> pd.DataFrame:
    """The looks condensed: one row per stretch of looks in which no worker's counts changed, from its first
    look to its last, with each worker's running and reserved counts as columns ('a running', 'a reserved'...)."""
    wide = samples.pivot(index="t", columns="worker", values=["running", "reserved"])
    wide.columns = [f"{worker} {what}" for what, worker in wide.columns]
    wide = wide[sorted(wide.columns, key=lambda c: (c.split()[0], c.split()[1] != "running"))]
    changed = wide.ne(wide.shift()).any(axis=1).cumsum()
    out = wide.reset_index().groupby(changed.to_numpy()).agg(
        **{"from s": ("t", "min"), "to s": ("t", "max"), "looks": ("t", "size")},
        **{c: (c, "first") for c in wide.columns})
    return out.reset_index(drop=True)


def running_on(app, workers: list[Worker], task_id: str, timeout: float = 10.0) -> Worker:
    """Wait until one of `workers` reports task `task_id` among its active tasks, and return that worker."""
    by_node = {w.nodename: w for w in workers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.inspect(destination=list(by_node), timeout=INSPECT_TIMEOUT_S,
                                      limit=len(by_node)).active() or {}
        for node, tasks in replies.items():
            if any(t["id"] == task_id for t in tasks) and node in by_node:
                return by_node[node]
        time.sleep(0.05)
    raise WorkerError(f"none of {sorted(w.name for w in workers)} started task {task_id} within {timeout:.0f} s",
                      fix="check that they consume the queue the task was sent to")
