"""Which celery processes on this machine are this course's workers, and who started each.

A machine may run many celery workers: another learner's, a test run's, a project's own. A worker belongs to
this course when coursekit launched it (`python -m coursekit.launch ... celery ... worker`) with this namespace
and this state folder. `Worker` writes both into the worker's environment, with a label saying what started
it (a lesson notebook, an exercise check, a script, a test); `survey()` reads them back with psutil.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import namespace, state
from .course import ROOT
from .errors import CourseError

STARTED_BY_ENV = "COURSEKIT_STARTED_BY"
"""In a worker's environment: what started it. Set it yourself to label the workers a process starts."""

_started_by: contextvars.ContextVar[str | None] = contextvars.ContextVar("coursekit_started_by", default=None)


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Workers created inside this block (in this thread) are labelled `label`, e.g. "exercise 01.countdown"."""
    token = _started_by.set(label)
    try:
        yield
    finally:
        _started_by.reset(token)


def _shown(path: str) -> str:
    """A path as the learner knows it: relative to the course folder when it lies inside it."""
    absolute = Path(os.path.abspath(path))
    return str(absolute.relative_to(ROOT)) if absolute.is_relative_to(ROOT) else str(absolute)


def origin(environ: Mapping[str, str] | None = None, argv: list[str] | None = None) -> str:
    """What is starting workers in this process, most specific first: a `labelled` block, COURSEKIT_STARTED_BY,
    the notebook of a Jupyter kernel (JupyterLab and `coursekit run` set JPY_SESSION_NAME), the running test,
    else the script or command."""
    env = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    label = _started_by.get()
    if label:
        return label
    if env.get(STARTED_BY_ENV, "").strip():
        return env[STARTED_BY_ENV].strip()
    if env.get("JPY_SESSION_NAME", "").strip():
        return _shown(env["JPY_SESSION_NAME"].strip())
    if env.get("PYTEST_CURRENT_TEST", "").strip():
        return "test " + env["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
    program = argv[0] if argv else ""
    if program.endswith(".py") and "ipykernel" not in program:
        return _shown(program)
    if "ipykernel" in program:
        return f"a Jupyter kernel (pid {os.getpid()}) whose notebook is unknown"
    if program in ("", "-c"):
        return f"an interactive Python (pid {os.getpid()})"
    return " ".join([Path(program).name, *argv[1:]])[:80]


def marks(label: str) -> dict[str, str]:
    """Environment entries that make a worker (or another celery process, e.g. Flower) recognisable as this
    course's, and say who started it."""
    return {STARTED_BY_ENV: label, "COURSEKIT_NAMESPACE": namespace.prefix(),
            "COURSEKIT_STATE_DIR": os.path.abspath(state.location())}


@dataclass(frozen=True)
class Seen:
    """One of this course's celery processes: a worker, or another celery command coursekit started (Flower)."""
    pid: int
    role: str
    """The celery sub-command: worker, flower, beat..."""
    nodename: str
    app: str
    started_by: str
    since: float
    """Start time, seconds since the epoch."""

    def line(self) -> str:
        age = max(0, int(time.time() - self.since))
        what = f"{self.nodename}  -A {self.app}" if self.role == "worker" else f"celery {self.role}"
        return f"pid {self.pid}  {what}  started by {self.started_by}, {age} s ago"


@dataclass
class Census:
    namespace: str
    state_folder: str
    course: list[Seen] = field(default_factory=list)
    """This course's celery processes, main processes only (a prefork pool's children are part of their worker)."""
    others: int = 0
    """Celery processes on this machine that are not this course's (main processes only)."""

    @property
    def workers(self) -> list[Seen]:
        return [p for p in self.course if p.role == "worker"]

    def summary(self) -> str:
        n = len(self.workers)
        return f"{n} course worker{'' if n == 1 else 's'} (namespace {self.namespace}, state folder {self.state_folder})"

    def others_line(self) -> str:
        if not self.others:
            return ""
        return f"{self.others} other celery process{'' if self.others == 1 else 'es'} on this machine, " \
               f"not this course's"


def _option(cmd: list[str], *names: str) -> str:
    for i, arg in enumerate(cmd[:-1]):
        if arg in names:
            return cmd[i + 1]
    return "?"


ROLES = ("worker", "flower", "beat", "events", "multi")


def _is_celery(cmd: list[str]) -> bool:
    return any(Path(arg).name == "celery" for arg in cmd[:8])


def _role(cmd: list[str]) -> str:
    return next((arg for arg in cmd if arg in ROLES), "?")


def survey() -> Census:
    """This course's workers and a count of the other celery processes on this machine."""
    here_ns, here_state = namespace.prefix(), os.path.abspath(state.location())
    found = Census(here_ns, here_state)
    celery = {p.pid: p for p in psutil.process_iter(["ppid", "cmdline", "create_time"])
              if _is_celery(p.info.get("cmdline") or [])}
    for proc in celery.values():
        if proc.info["ppid"] in celery:  # a prefork pool child: same command line as its worker
            continue
        cmd = proc.info["cmdline"]
        try:
            env = proc.environ()
            ours = ("coursekit.launch" in cmd or STARTED_BY_ENV in env) and namespace.prefix(env) == here_ns \
                and os.path.abspath(state.location(env)) == here_state
        except (psutil.Error, CourseError):  # another user's process, gone, or a namespace of another kind
            ours = False
        if not ours:
            found.others += 1
            continue
        label = env.get(STARTED_BY_ENV) or "(no label: started by an older coursekit)"
        found.course.append(Seen(proc.pid, _role(cmd), _option(cmd, "-n", "--hostname"),
                                 _option(cmd, "-A", "--app"), label, proc.info["create_time"]))
    found.course.sort(key=lambda w: w.since)
    return found
