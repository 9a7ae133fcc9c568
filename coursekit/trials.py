"""What a check's worker did with the calls the check sent it: `Session.run_on_worker(task, calls)` sends each
call of one task of the learner's module, waits for each to end, and returns one `Trial` per call, read from the
recording (every run, where it ran, how many messages the worker received) and from its result."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from celery import Task

from .evidence import Ending
from .outcomes import Incorrect


def task_named(mod, name: str, bound: bool = False) -> Task:
    """The task `name` of the learner's module; Incorrect when it is a plain function, or (`bound`) not bound."""
    task = getattr(mod, name, None)
    decorator = "@app.task(bind=True)" if bound else "@app.task"
    if not isinstance(task, Task):
        raise Incorrect(f"{name} is a plain function, not a task: decorate it with {decorator} so a worker can "
                        "run it")
    if bound and list(inspect.signature(task.run).parameters)[:1] == ["self"]:
        # bind=True makes run a bound method, so `self` is not among its parameters
        raise Incorrect(f"{name} takes `self` but its task is not bound: add bind=True to @app.task, so that Celery "
                        "passes the task as `self` (and self.request.retries counts the attempts)")
    return task


@dataclass
class Trial:
    """One call the check sent to its worker, and what came of it."""

    call: str
    """The call as the learner would write it: `fetch(3)`."""
    args: tuple
    end: Ending
    runs: list[dict]
    """Each run, in time order: `at` (Unix time it started), `node`, `pid`, `in_pool`, `outcome`."""
    received: int
    """How many messages of this task id the worker received: one per attempt when each retry went through
    the broker."""
    waited: float
    """How long the check would wait for it to end, from the sending."""

    @property
    def starts(self) -> list[float]:
        return [run["at"] for run in self.runs]

    @property
    def gaps(self) -> list[float]:
        """Seconds between one attempt's start and the next's."""
        starts = self.starts
        return [round(b - a, 2) for a, b in zip(starts, starts[1:])]

    @property
    def elsewhere(self) -> list[dict]:
        """Runs that were not in one of the check worker's pool processes."""
        return [run for run in self.runs if not run["in_pool"]]

    def attempts(self) -> str:
        """`fetch(3): 4 attempt(s), gaps [1.0, 2.0, 4.0] s, 7.0 s from first to last, returned 'ok'`"""
        starts, gaps = self.starts, self.gaps
        total = f", {starts[-1] - starts[0]:.1f} s from first to last" if len(starts) > 1 else ""
        shown = ", ".join(map(str, gaps[:5])) + (", ..." if len(gaps) > 5 else "")
        return f"{self.call}: {len(starts)} attempt(s), gaps [{shown}] s{total}, {self.end.describe()}"
