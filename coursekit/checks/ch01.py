"""Chapter 01 exercises: countdown, expires, apply versus apply_async. The learner's functions send the lab's
tasks; each check calls them with inputs of its own, reads the messages they published (eta, expires), the
worker's events, and the results, and judges the timing and the process that ran each task."""
from __future__ import annotations

import os
import time

from celery.result import AsyncResult, EagerResult

from ..evidence import EagerRuns, ending
from ..calls import call
from ..budget import budget
from ..exercise import Exercise, hidden_pairs
from ..outcomes import Incorrect, Uncheckable

LAB = "coursekit.labs.calling"
ADD = f"{LAB}.add"
WHEREABOUTS = f"{LAB}.whereabouts"


def _async_result(value, name: str) -> AsyncResult:
    if isinstance(value, EagerResult):
        raise Incorrect(f"{name} returned an EagerResult: apply() ran the task right here; send it to a worker")
    if not isinstance(value, AsyncResult):
        raise Incorrect(f"{name} returned {type(value).__name__} {value!r}; return the AsyncResult that "
                        "apply_async() gives")
    return value


def _message(s, called, result: AsyncResult, name: str, args: tuple):
    """The one message `name` published for `result`, checked to be add(*args)."""
    during = s.sent.between(called.begun, called.ended)
    mine = [m for m in during if m.id == result.id]
    if not mine:
        raise Incorrect(f"{name} published no message for the AsyncResult it returned while it ran"
                        + (f" (it sent {', '.join(m.label() for m in during)})" if during else "") +
                        ": publish it at once with apply_async; the broker and the worker do the waiting")
    message = mine[0]
    if message.task != ADD:
        raise Incorrect(f"{name} sent {message.label()}; send the lab's add task")
    if tuple(message.args) != args or message.kwargs:
        raise Incorrect(f"{name} sent {message.label()}; the check called it with {args}, so send "
                        f"add{args}: pass x and y on, not fixed numbers")
    return message


class CallingExercise(Exercise):
    """A chapter 01 exercise: the learner's functions send the lab's tasks; the check's worker runs the lab."""

    module = "ex01_calling"
    lab = LAB


IDLE_S = 0.5
"""How long a right answer may take before its publish and after it. The publish itself can take most of a second on
a loaded machine (CI saw 0.7 s), so it is timed apart (Called.published): a sleep before or after it is not."""


def eta_is_right(eta: float, called) -> bool:
    """No sooner than 2 s after the call began, and no later than 2.5 s after the publish began (the eta is set
    there; without a publish seen, after the call began)."""
    sent = called.published[0][0] if called.published else called.begun
    return eta - called.begun >= 1.99 and eta - sent <= 2.5


def waited(called) -> float:
    """How long the call waited instead of publishing: outside its publish, or the whole call if it published
    nothing (in this thread)."""
    idle = called.idle_around_publishing()
    return called.seconds if idle is None else idle


class Countdown(CallingExercise):
    id = "01.countdown"
    functions = ("send_later",)

    def run(self, s, observed):
        (x, y), = hidden_pairs(1, shown=((2, 3),))
        name = f"send_later({x}, {y})"
        s.consume()
        called = call(s.mod.send_later, x, y, name=name, source=s.source)
        result = _async_result(called.value, name)
        message = _message(s, called, result, name, (x, y))
        observed += [f"{name} returned after {called.seconds:.3f} s", f"message {message.label()}: "
                     f"{message.options(since=called.begun)} from the call"]
        if message.eta is None or not eta_is_right(message.eta, called):
            return {"name": name, "args": (x, y), "called": called, "message": message, "end": None, "runs": []}
        end = ending(result, budget(8))  # the eta is right: see what the worker makes of it
        runs = s.runs([result.id])[result.id]
        observed.append(f"the task {end.describe()}")
        if runs:
            observed.append(f"the worker started it {runs[0]['at'] - called.begun:.2f} s after the call")
        return {"name": name, "args": (x, y), "called": called, "message": message, "end": end, "runs": runs}

    def judge(self, seen, observed):
        name, called, message, end = seen["name"], seen["called"], seen["message"], seen["end"]
        assert waited(called) < IDLE_S, (f"{name} took {called.seconds:.1f} s to return, {waited(called):.1f} s of "
                                         "them outside publishing its message: it waited instead of scheduling the "
                                         "task (use countdown or eta, not sleep)")
        assert message.eta is not None, (f"the message {name} sent carried no eta, so the worker ran it at once, "
                                         "which is sooner than 2 s: give apply_async a countdown (or an eta)")
        ahead = message.eta - called.begun
        assert ahead >= 1.99, (f"the message's eta was {ahead:.2f} s after the call: the task must start no "
                               "sooner than 2 s")
        assert eta_is_right(message.eta, called), (f"the message's eta was {ahead:.2f} s after the call; aim for "
                                                   "2 s, not later")
        if end.state == "REVOKED":
            raise AssertionError(f"the task was REVOKED instead of run ({message.options(since=called.begun)} from "
                                 "the call): an expires that "
                                 "comes before the eta drops it; send only the countdown")
        assert end.state != "NO RESULT", ("no result within 8 s of the call: the task must run about 2 s after "
                                          "it, not later")
        assert end.state == "SUCCESS", f"add{seen['args']} {end.describe()}"
        x, y = seen["args"]
        assert end.value == x + y, f"add({x}, {y}) returned {end.value!r}; expected {x + y}"
        runs = seen["runs"]
        assert runs and runs[0]["in_pool"], "the task did not run in the check worker's pool process"
        started = runs[0]["at"] - called.begun
        assert runs[0]["at"] >= message.eta - 0.1, (f"the worker started the task {started:.2f} s after the call, "
                                                    f"before its eta ({ahead:.2f} s after the call)")


OVER_S = 1.5
"""How long the stale probe waits for a worker: clearly more than the exercise's 1 s."""
UNDER_S = 0.55
"""How long the fresh probe waits before the worker starts reading the queue: it is taken within about 0.05 s
(POLL_S), up to 0.3 s on a busy machine, so it waits clearly less than 1 s."""


class Expires(CallingExercise):
    id = "01.expires"
    functions = ("send_if_fresh",)

    def run(self, s, observed):
        stale_args, fresh_args = hidden_pairs(2, shown=((1, 1), (2, 2)))
        stale = self._probe(s, stale_args)
        time.sleep(max(0.0, stale["message"].at + OVER_S - UNDER_S - time.time()))
        fresh = self._probe(s, fresh_args)
        time.sleep(max(0.0, fresh["message"].at + UNDER_S - time.time()))
        s.consume()  # only now can a worker take them: the first has waited OVER_S, the second UNDER_S
        for probe in (stale, fresh):
            probe["end"] = ending(probe["result"], budget(6))
        runs = s.runs([stale["result"].id, fresh["result"].id])
        for probe in (stale, fresh):
            probe["runs"] = runs[probe["result"].id]
            taken = s.taken_at(probe["result"].id)
            probe["waited"] = None if taken is None else taken - probe["message"].at
            waited = "never taken" if taken is None else f"taken after {probe['waited']:.2f} s"
            observed.append(f"{probe['name']}: {probe['message'].options(since=probe['called'].begun)} from the "
                            f"call; {waited}; {probe['end'].describe()}")
        return {"stale": stale, "fresh": fresh}

    def _probe(self, s, args):
        name = f"send_if_fresh{args}"
        called = call(s.mod.send_if_fresh, *args, name=name, source=s.source)
        result = _async_result(called.value, name)
        if called.seconds > 0.5:
            raise Incorrect(f"{name} took {called.seconds:.1f} s to return: send the message and return at once")
        return {"name": name, "args": args, "result": result, "called": called,
                "message": _message(s, called, result, name, args)}

    def judge(self, seen, observed):
        stale, fresh = seen["stale"], seen["fresh"]
        for probe, side, ok in ((stale, "more", lambda w: w >= 1.1), (fresh, "less", lambda w: w <= 0.9)):
            if probe["waited"] is not None and not ok(probe["waited"]):
                raise Uncheckable(f"the machine was too busy for this timing experiment: {probe['name']}'s "
                                  f"message was meant to wait clearly {side} than 1 s and waited "
                                  f"{probe['waited']:.2f} s", fix="check again")
        for probe in (stale, fresh):
            message = probe["message"]
            ahead = None if message.eta is None else message.eta - probe["called"].begun
            assert ahead is None or ahead < 0.05, (
                f"{probe['name']}'s message carried an eta {ahead:+.2f} s from the call: send it to run at once, "
                "with only an expires (a countdown or eta holds back even a fresh task)")
        end, message = stale["end"], stale["message"]
        assert end.state == "REVOKED", (
            f"{stale['name']}: the message waited {stale['waited'] or OVER_S:.2f} s for a worker and "
            f"{end.describe()}: a task that waited more than 1 s should have expired after 1 s "
            f"(the message carried {message.options(since=stale['called'].begun)} from the call)")
        end, message = fresh["end"], fresh["message"]
        assert end.state != "REVOKED", (
            f"{fresh['name']}: the message waited only {fresh['waited'] or UNDER_S:.2f} s and was REVOKED: a task "
            f"that waited less than 1 s must run (expire after 1 s, not sooner; it carried "
            f"{message.options(since=fresh['called'].begun)} from the call)")
        a, b = fresh["args"]
        assert end.state == "SUCCESS" and end.value == a + b, (
            f"{fresh['name']}: a task sent while a worker was ready {end.describe()}: it should run and return "
            f"{a + b}")
        for probe in (stale, fresh):
            message = probe["message"]
            assert message.expires is not None, f"{probe['name']}'s message carried no expires"
            after = message.expires - probe["called"].begun
            assert 0.9 <= after <= 1.1, (f"{probe['name']}'s message carried expires {after:+.2f} s after the call; "
                                         "the rule is 1 s")
        assert fresh["runs"] and fresh["runs"][0]["in_pool"], \
            f"{fresh['name']}: the task did not run in the check worker's pool process"


class ApplyOrAsync(CallingExercise):
    id = "01.apply_or_async"
    functions = ("here", "on_a_worker")

    def run(self, s, observed):
        s.consume()
        with EagerRuns() as eager:
            here = call(s.mod.here, timeout=5, name="here()", source=s.source)
        there = call(s.mod.on_a_worker, timeout=15, name="on_a_worker()", source=s.source)
        here_sent = s.sent.between(here.begun, here.ended)
        there_sent = [m for m in s.sent.between(there.begun, there.ended) if m.task == WHEREABOUTS]
        runs = s.runs([m.id for m in there_sent])
        ran = [run for m in there_sent for run in runs[m.id]]
        observed += [f"here() -> {here.value!r}", f"on_a_worker() -> {there.value!r}",
                     f"whereabouts runs in this process while here() ran: {len(eager)}",
                     f"messages sent while here() ran: {len(here_sent)}",
                     f"messages sent while on_a_worker() ran: {len(there_sent)}",
                     f"runs on the check's worker: {[(r['pid'], r['outcome']) for r in ran]}"]
        return {"here": here.value, "there": there.value, "eager": [r for r in eager if r.task == WHEREABOUTS],
                "here_sent": here_sent, "there_sent": there_sent, "ran": ran, "node": s.worker.nodename}

    def judge(self, seen, observed):
        local, remote = seen["here"], seen["there"]
        for name, value in (("here()", local), ("on_a_worker()", remote)):
            assert not isinstance(value, AsyncResult), (f"{name} returned {type(value).__name__}; return the "
                                                        "task's value with .get()")
            assert isinstance(value, dict) and "pid" in value, \
                f"{name} returned {value!r}; return what the whereabouts task returns"
        if seen["here_sent"]:
            raise AssertionError(f"here() published {seen['here_sent'][0].label()} and got pid {local['pid']}, "
                                 f"not in this process (pid {os.getpid()}): run the task with apply(), which "
                                 "touches no broker")
        if not seen["eager"]:
            if local.get("pid") == os.getpid() and not local.get("eager"):
                raise AssertionError("here() called the function directly; use the task's apply() so Celery runs it")
            raise AssertionError(f"here() returned {local!r}, but no whereabouts task ran in this process while it "
                                 "ran: run the task with whereabouts.apply() and return its value")
        assert local == seen["eager"][-1].value, (f"here() returned {local!r}, not what the task it ran returned "
                                                  f"({seen['eager'][-1].value!r})")
        if not seen["there_sent"]:
            raise AssertionError(f"on_a_worker() sent no message and got pid {remote['pid']}, which is not one of "
                                 "the worker's pool processes: send the task with delay() and wait for its value")
        ran = [r for r in seen["ran"] if r["in_pool"] and r["outcome"] == "SUCCESS"]
        assert ran, "the message on_a_worker() sent did not run in one of the check worker's pool processes"
        assert remote.get("pid") in {r["pid"] for r in ran} and remote.get("worker") == seen["node"], (
            f"on_a_worker() returned {remote!r}, which is not what the worker's run returned (pid "
            f"{ran[0]['pid']} on {seen['node']}): return the task's value, from .get()")


countdown = Countdown()
expires = Expires()
apply_or_async = ApplyOrAsync()
