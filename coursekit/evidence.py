"""What a check sees happen, besides the workers' events: the messages this process publishes (with their options),
the tasks it runs eagerly, how a result ended, and whether the lab's shared tasks were changed.

A right value reached the wrong way is still wrong; these are the facts that tell the ways apart.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.signals import before_task_publish, task_postrun, task_prerun

LAB_PREFIX = "coursekit.labs."


def _timestamp(iso: str | None) -> float | None:
    """A message's eta/expires header as a Unix time (a naive one is local time, as the worker reads it)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None


def call_repr(name: str, args=(), kwargs=None) -> str:
    """`add(3, 4)`: a task call as the learner would write it."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()]
    return f"{name.rsplit('.', 1)[-1]}({', '.join(parts)})"


@dataclass
class Sent:
    """One message this process published, as the broker got it."""

    id: str
    task: str
    args: tuple
    kwargs: dict
    at: float
    """Unix time of publishing."""
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    priority: int | None = None
    queue: str | None = None

    def label(self) -> str:
        return call_repr(self.task, self.args, self.kwargs)

    def options(self, since: float | None = None) -> str:
        """The timing options, relative to `since` (a Unix time; by default the moment of publishing):
        `eta +2.00 s, expires +1.00 s`. Give the moment the learner's function was called when that is what the
        exercise counts from: publishing comes a few milliseconds after the options were computed."""
        base = self.at if since is None else since
        parts = [f"{name} {value - base:+.2f} s" for name, value in (("eta", self.eta), ("expires", self.expires))
                 if value is not None]
        if self.priority is not None:
            parts.append(f"priority {self.priority}")
        return ", ".join(parts) or "no eta, no expires"


class Publishes(list):
    """`with Publishes(track) as sent:` collects every message published in this process meanwhile (from any
    thread). With `track`, each task id is also appended to that file at once, so a later check can clear what
    this one left even if it was killed half-way."""

    def __init__(self, track: Path | None = None):
        super().__init__()
        self.track = track
        self._lock = threading.Lock()

    def _on_publish(self, sender=None, body=None, headers=None, properties=None, routing_key=None, **_):
        headers = headers or {}
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ((), {})
        sent = Sent(id=headers.get("id", ""), task=headers.get("task") or str(sender), args=tuple(args or ()),
                    kwargs=dict(kwargs or {}), at=time.time(), eta=_timestamp(headers.get("eta")),
                    expires=_timestamp(headers.get("expires")), retries=int(headers.get("retries") or 0),
                    priority=(properties or {}).get("priority"), queue=routing_key)
        with self._lock:
            self.append(sent)
            if self.track is not None:
                with open(self.track, "a") as out:
                    out.write(sent.id + "\n")

    def between(self, begun: float, ended: float, task: str | None = None) -> list[Sent]:
        with self._lock:
            return [s for s in self if begun <= s.at <= ended and (task is None or s.task == task)]

    def of(self, task_id: str) -> list[Sent]:
        with self._lock:
            return [s for s in self if s.id == task_id]

    def __enter__(self) -> "Publishes":
        before_task_publish.connect(self._on_publish, weak=False)
        return self

    def __exit__(self, *exc) -> None:
        before_task_publish.disconnect(self._on_publish)


@dataclass
class EagerRun:
    """A task this process ran itself (apply(): no broker, no worker)."""

    task: str
    id: str
    pid: int
    begun: float
    value: object = None
    state: str = ""


class EagerRuns(list):
    """`with EagerRuns() as runs:` collects the tasks run eagerly in this process meanwhile. Celery's tracer sends
    task_prerun/task_postrun for apply() too; a plain function call or a made-up return value sends neither."""

    def __init__(self):
        super().__init__()
        self._open: dict[str, EagerRun] = {}

    def _prerun(self, task_id=None, task=None, **_):
        if task is not None and task.request.is_eager:
            self._open[task_id] = EagerRun(task.name, task_id, os.getpid(), time.time())

    def _postrun(self, task_id=None, retval=None, state=None, **_):
        run = self._open.pop(task_id, None)
        if run is not None:
            run.value, run.state = retval, state
            self.append(run)

    def __enter__(self) -> "EagerRuns":
        task_prerun.connect(self._prerun, weak=False)
        task_postrun.connect(self._postrun, weak=False)
        return self

    def __exit__(self, *exc) -> None:
        task_prerun.disconnect(self._prerun)
        task_postrun.disconnect(self._postrun)


@dataclass
class Ending:
    """How a task sent to a worker ended, as its result says."""

    state: str
    """SUCCESS, FAILURE, REVOKED or NO RESULT."""
    value: object = None
    error: str = ""
    message: str = ""
    traceback: str = ""
    waited: float = 0.0
    """How long the check waited, when no result came."""

    def line(self, path: Path) -> int | None:
        """The learner's line in the worker's traceback of a failure."""
        from .learner import frames_in

        frames = frames_in(self.traceback, path)
        return frames[-1][0] if frames else None

    def describe(self) -> str:
        if self.state == "SUCCESS":
            return f"returned {self.value!r}"
        if self.state == "FAILURE":
            return f"failed with {self.error}: {self.message}" if self.message else f"failed with {self.error}"
        if self.state == "REVOKED":
            return "was REVOKED (dropped, not run)"
        return f"had no result after {self.waited:.0f} s"


def ending(result, timeout: float, sent: float | None = None) -> Ending:
    """Wait up to `timeout` s for `result`; never raises for what the task did (failure, revocation, nothing).
    `sent` (a `time.monotonic()`) is when the task was sent: a missing result then counts its wait from there, as
    the learner would, not from when this wait began."""
    begun = time.monotonic() if sent is None else sent
    try:
        value = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        return Ending("NO RESULT", waited=round(time.monotonic() - begun))
    except TaskRevokedError:
        return Ending("REVOKED")
    state = result.state
    if state == "SUCCESS":
        return Ending("SUCCESS", value=value)
    if state == "REVOKED" or isinstance(value, TaskRevokedError):
        return Ending("REVOKED")
    return Ending("FAILURE", error=type(value).__name__, message=str(value)[:300], traceback=result.traceback or "")


# -- the lab's tasks are shared: a learner's module must not change them ---------------------------------------
def lab_tasks() -> list:
    from celery._state import _get_active_apps

    # `_tasks`, not `tasks`: reading `tasks` finalizes an app, which builds every pending task of a learner's
    # module at once, and one broken there would raise here. A lab task someone changed is built already.
    return [task for app in list(_get_active_apps()) for name, task in list(app._tasks.items())
            if name.startswith(LAB_PREFIX)]


def changed_lab_tasks() -> list[str]:
    """`add.expires = 1`-style changes to lab tasks: attributes set on the task object itself. Every lab task is
    built by @app.task with its options on its class, so an attribute on the instance came from someone's code."""
    return [f"{task.name.rsplit('.', 1)[-1]}.{attr} = {value!r}" for task in lab_tasks()
            for attr, value in vars(task).items() if not attr.startswith("_")]


def restore_lab_tasks() -> None:
    """Undo attributes set on lab task objects, and forget the options Celery cached from them, so the next
    check (or lesson) in this process sends lab tasks as a fresh process would."""
    for task in lab_tasks():
        for attr in [a for a in vars(task) if not a.startswith("_") or a == "_exec_options"]:
            delattr(task, attr)
