"""Chapter 01 exercises: countdown, expires, apply versus apply_async. The learner's module sends lab tasks;
each check starts a worker, calls the learner's function, records the events and judges the timing."""
from __future__ import annotations

import os
import time

from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult, EagerResult

from .. import get, queues, record
from ..errors import ResultError
from ..exercise import Exercise, Incorrect, budget, call, check_worker

LAB = "coursekit.labs.calling"


def _lab():
    from ..labs import calling

    return calling


def _async_result(value, name: str) -> AsyncResult:
    if isinstance(value, EagerResult):
        raise Incorrect(f"{name} returned an EagerResult: apply() ran the task right here; send it to a worker")
    if not isinstance(value, AsyncResult):
        raise Incorrect(f"{name} returned {type(value).__name__} {value!r}; return the AsyncResult that "
                        "apply_async() gives")
    return value


class Countdown(Exercise):
    id = "01.countdown"
    title = "Run a task no sooner than 2 s from now"
    module = "ex01_calling"
    functions = ("send_later",)
    praise = "Correct: the call returned at once and the worker started the task about 2 s later."

    def run(self, mod, observed):
        lab = _lab()
        queues.purge(lab.app)
        with record(lab.app) as recorder, check_worker(LAB):
            value, took = call(mod.send_later, 2, 3)
            result = _async_result(value, "send_later(2, 3)")
            try:
                answer = get(result, timeout=budget(8))
            except ResultError:
                raise Incorrect("no result within 8 s of the call: the task must run about 2 s after it, "
                                "not later") from None
        tasks = recorder.recording.tasks.set_index("task_id")
        row = tasks.loc[result.id]
        delay = row.started - row.sent
        observed += [f"send_later(2, 3) returned after {took:.3f} s", f"the worker started it {delay:.2f} s "
                     f"after it was sent", f"result {answer!r}"]
        return {"took": took, "delay": delay, "answer": answer}

    def judge(self, seen, observed):
        assert seen["took"] < 0.5, (f"send_later took {seen['took']:.1f} s to return: it waited instead of "
                                    "scheduling the task (use countdown or eta, not sleep)")
        assert seen["delay"] >= 1.9, (f"the task started {seen['delay']:.2f} s after it was sent; it must start "
                                      "no sooner than 2 s")
        assert seen["delay"] <= 3.5, f"the task started {seen['delay']:.2f} s after it was sent; aim for 2 s"
        assert seen["answer"] == 5, f"add(2, 3) returned {seen['answer']!r}: send add with the arguments (x, y)"


class Expires(Exercise):
    id = "01.expires"
    title = "Drop a task that waited too long"
    module = "ex01_calling"
    functions = ("send_if_fresh",)
    praise = "Correct: the message that waited 1.5 s was revoked, and a fresh one ran."

    def run(self, mod, observed):
        lab = _lab()
        queues.purge(lab.app)
        stale, _ = call(mod.send_if_fresh, 1, 1)
        stale = _async_result(stale, "send_if_fresh(1, 1)")
        sent = time.monotonic()
        time.sleep(max(0.0, 1.5 - (time.monotonic() - sent)))  # no worker yet: the message waits
        with check_worker(LAB):
            try:
                outcome = f"ran and returned {get(stale, timeout=budget(8))!r}"
            except TaskRevokedError:
                outcome = "REVOKED"
            except ResultError as exc:
                raise Incorrect(f"the first task neither ran nor expired: {exc.problem}") from None
            fresh, _ = call(mod.send_if_fresh, 2, 2)
            fresh = _async_result(fresh, "send_if_fresh(2, 2)")
            try:
                fresh_outcome = f"returned {get(fresh, timeout=budget(8))!r}"
            except TaskRevokedError:
                fresh_outcome = "REVOKED"
            except ResultError as exc:
                raise Incorrect(f"with a worker ready, the task did not run: {exc.problem}") from None
        observed += [f"sent with no worker, worker started 1.5 s later: {outcome}",
                     f"sent with a worker ready: {fresh_outcome}"]
        return {"stale": outcome, "fresh": fresh_outcome}

    def judge(self, seen, observed):
        assert seen["stale"] == "REVOKED", (f"a task that waited 1.5 s for a worker {seen['stale']}: it should have "
                                            "expired after 1 s")
        assert seen["fresh"] == "returned 4", (f"a task sent while a worker was ready {seen['fresh']}: it should "
                                               "run and return 4 (expire after 1 s, not sooner)")


class ApplyOrAsync(Exercise):
    id = "01.apply_or_async"
    title = "Run a task here, then on a worker"
    module = "ex01_calling"
    functions = ("here", "on_a_worker")
    praise = "Correct: apply() ran in this process with no message; delay() ran in a worker's pool process."

    def run(self, mod, observed):
        lab = _lab()
        queues.purge(lab.app)
        with record(lab.app) as recorder, check_worker(LAB) as worker:
            local, _ = call(mod.here, timeout=5)
            sent_by_here = len(recorder.recording.tasks)
            remote, _ = call(mod.on_a_worker, timeout=15)
            children = worker.children
        observed += [f"here() -> {local!r}", f"on_a_worker() -> {remote!r}",
                     f"messages sent while here() ran: {sent_by_here}", f"worker pool pids: {children}"]
        return {"local": local, "remote": remote, "sent_by_here": sent_by_here, "children": children}

    def judge(self, seen, observed):
        local, remote = seen["local"], seen["remote"]
        for name, value in (("here()", local), ("on_a_worker()", remote)):
            assert not isinstance(value, AsyncResult), (f"{name} returned {type(value).__name__}; return the "
                                                        "task's value with .get()")
            assert isinstance(value, dict) and "pid" in value, \
                f"{name} returned {value!r}; return what the whereabouts task returns"
        assert local["pid"] == os.getpid(), (f"here() ran in pid {local['pid']}, not in this process "
                                             f"(pid {os.getpid()}): run the task with apply()")
        assert local["eager"], "here() called the function directly; use the task's apply() so Celery runs it"
        assert seen["sent_by_here"] == 0, "here() published a message: apply() must not touch the broker"
        assert remote["pid"] in seen["children"], (f"on_a_worker() ran in pid {remote['pid']}, which is not one "
                                                   f"of the worker's pool processes {seen['children']}")


countdown = Countdown()
expires = Expires()
apply_or_async = ApplyOrAsync()
