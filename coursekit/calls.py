"""Calling the learner's code for a check, within the check's time: `call` a function of theirs in a thread of its
own (it may block or hang), `send` one of their tasks. Whatever their code raises becomes Incorrect, naming their
line."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from celery.signals import after_task_publish, before_task_publish

from .budget import budget, limit
from .outcomes import Incorrect, Uncheckable


def at_line(exc: BaseException, source) -> str:
    """' at line 12 (`...`)' when the learner's module raised `exc` (`source`: their module), else ''."""
    from .learner import raised_at

    line = raised_at(exc, source.path) if source is not None else None
    return f" at {source.where(line)}" if line else ""


@dataclass
class Called:
    """What a call of the learner's function gave, and when (Unix times, to match the messages it published)."""

    value: object
    seconds: float
    begun: float
    ended: float
    published: tuple = ()
    """(start, end) of each message the call published, from Celery's before/after_task_publish signals in the
    call's thread: a slow publish (a loaded machine) is told apart from a call that waited before or after it."""

    def idle_around_publishing(self) -> float | None:
        """The longest the call spent before its first publish or after its last one; None if it published none."""
        if not self.published:
            return None
        return max(self.published[0][0] - self.begun, self.ended - self.published[-1][1])


def call(fn, *args, timeout: float = 5.0, name: str = "", source=None) -> Called:
    """Run the learner's function with a time bound. A raise is Incorrect, naming the learner's line (`source`)."""
    label = name or f"{getattr(fn, '__name__', 'the function')}{args}".replace(",)", ")")
    allowed = budget(timeout)
    box: dict = {}

    publishes: list[list[float]] = []

    def target():
        box["begun"] = time.time()
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # the learner's code raised: that is the answer being judged
            box["error"] = exc
        box["ended"] = time.time()

    thread = threading.Thread(target=target, daemon=True, name="coursekit-learner-call")

    def before(**_):
        if threading.current_thread() is thread:
            publishes.append([time.time(), time.time()])

    def after(**_):
        if threading.current_thread() is thread and publishes:
            publishes[-1][1] = time.time()

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        thread.start()
        thread.join(allowed)
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)
    if thread.is_alive():
        if allowed < timeout:
            raise Uncheckable(f"{label} was still running when the check's {limit():.0f} s ran out")
        raise Incorrect(f"{label} did not return within {timeout:g} s: it must not block or wait for the task",
                        fix="Python cannot stop a thread, so that call is still running in this kernel: restart the "
                            "kernel once you have changed the function")
    if "error" in box:
        exc = box["error"]
        raise Incorrect(f"{label} raised {type(exc).__name__}: {exc}{at_line(exc, source)}")
    return Called(box["value"], box["ended"] - box["begun"], box["begun"], box["ended"],
                  tuple(tuple(p) for p in publishes))


def send(task, args: tuple, source=None, **options):
    """`task.apply_async(args, **options)` for the check; a raise (wrong arguments for the task's signature, a task
    that cannot be built) is Incorrect, naming the learner's line."""
    label = f"{task.name.rsplit('.', 1)[-1]}.delay{args}".replace(",)", ")")
    try:
        return task.apply_async(args, **options)
    except Exception as exc:
        raise Incorrect(f"{label} raised {type(exc).__name__}: {exc}{at_line(exc, source)}") from None
