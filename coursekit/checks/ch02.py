"""Chapter 02 exercises: retries, judged by the attempts the worker's events show: how many, how far apart, each
one a message of its own through the broker, on the check's worker, and how the last one ended."""
from __future__ import annotations

import inspect
import random
import time

from celery import Task

from ..evidence import ending
from ..exercise import Exercise, Incorrect, budget, send


def task_of(s, name: str) -> Task:
    task = getattr(s.mod, name, None)
    if not isinstance(task, Task):
        raise Incorrect(f"{name} is not a task: keep its @app.task decorator (with bind=True)")
    params = list(inspect.signature(task.run).parameters)
    if params[:1] == ["self"]:  # bind=True makes run a bound method, so `self` is not among its parameters
        raise Incorrect(f"{name} takes `self` but its task is not bound: add bind=True to @app.task, so that Celery "
                        "passes the task as `self` (and self.request.retries counts the attempts)")
    return task


def attempts(s, task: Task, calls: list[tuple], waits: list[float]) -> list[dict]:
    """Send `task` once per argument tuple, all at once; wait up to `waits[i]` s from the sending for call i to end;
    return for each call its attempts (starts, gaps), the deliveries the worker received, where they ran, and how
    it ended."""
    s.consume()
    results = [send(task, args, s.source) for args in calls]
    begun = time.monotonic()
    endings = [ending(r, budget(max(0.1, begun + wait - time.monotonic()))) for r, wait in zip(results, waits)]
    runs = s.runs([r.id for r in results])
    out = []
    for args, result, end, wait in zip(calls, results, endings, waits):
        starts = [run["at"] for run in runs[result.id]]
        out.append({"call": f"{task.name.rsplit('.', 1)[-1]}{args!r}".replace(",)", ")"), "args": args,
                    "end": end, "starts": starts, "gaps": [round(b - a, 2) for a, b in zip(starts, starts[1:])],
                    "received": s.received(result.id), "waited": wait,
                    "elsewhere": [r for r in runs[result.id] if not r["in_pool"]]})
    return out


def describe(seen: dict) -> str:
    total = f", {seen['starts'][-1] - seen['starts'][0]:.1f} s from first to last" if len(seen["starts"]) > 1 else ""
    gaps = ", ".join(map(str, seen["gaps"][:5])) + (", ..." if len(seen["gaps"]) > 5 else "")
    return f"{seen['call']}: {len(seen['starts'])} attempt(s), gaps [{gaps}] s{total}, {seen['end'].describe()}"


def each_attempt_a_message(seen: dict) -> None:
    n, received = len(seen["starts"]), seen["received"]
    assert not seen["elsewhere"], f"{seen['call']} ran outside the check worker's pool processes"
    assert received >= n, (f"{seen['call']} made {n} attempts from {received} message(s): a retry must be a new "
                           "message through the broker (self.retry or autoretry_for), not a loop inside one run")


class Backoff(Exercise):
    id = "02.backoff"
    title = "Retry with exponential backoff, no jitter"
    module = "ex02_retries"
    functions = ("fetch",)
    praise = ("Correct: fetch(3) made four attempts, 1, 2 and 4 s apart, then succeeded; one more failure than "
              "that, and it gave up after its third retry.")

    def run(self, s, observed):
        task = task_of(s, "fetch")
        worse = random.SystemRandom().randint(4, 9)  # fails for longer than three retries can cover
        recovers, gives_up = attempts(s, task, [(3,), (worse,)], waits=[10, 10])
        observed += [describe(recovers), describe(gives_up)]
        return {"recovers": recovers, "gives_up": gives_up}

    def judge(self, seen, observed):
        recovers, gives_up = seen["recovers"], seen["gives_up"]
        end, gaps = recovers["end"], recovers["gaps"]
        if len(recovers["starts"]) == 1:
            assert end.state != "NO RESULT", (f"after the first attempt nothing more ran within {recovers['waited']:g} "
                                              "s: a retry with no backoff waits default_retry_delay, 180 s")
            assert end.state != "SUCCESS", (f"{recovers['call']} succeeded in one attempt: its retries happened "
                                            "inside that one run, not as new attempts; let Celery retry "
                                            "(autoretry_for)")
            raise AssertionError(f"{recovers['call']} ran once and did not retry: name ConnectionError in "
                                 "autoretry_for")
        each_attempt_a_message(recovers)
        for n, (gap, want) in enumerate(zip(gaps, [1, 2, 4]), 1):
            assert abs(gap - want) <= 0.4, (f"{recovers['call']}: gap {n} was {gap} s; expected {want} s (backoff 1, "
                                            "2, 4 s, no jitter: jitter makes the waits random)")
        assert len(gaps) >= 3, (f"{recovers['call']}: after {len(gaps) + 1} attempts nothing more ran within "
                                f"{recovers['waited']:g} s; it fails 3 times, so expect 4 attempts")
        assert len(gaps) == 3, f"{recovers['call']} made {len(gaps) + 1} attempts; it fails 3 times, so expect 4"
        assert end.state == "SUCCESS", f"{recovers['call']} {end.describe()}; it should succeed on the 4th attempt"
        end, n = gives_up["end"], len(gives_up["starts"])
        assert n <= 4 and end.state != "NO RESULT", (
            f"{gives_up['call']} was still retrying after {n} attempts ({describe(gives_up)}): stop after 3 "
            "retries (max_retries=3; None means forever)")
        assert n == 4, f"{gives_up['call']} made {n} attempts; expected 4: the first and 3 retries"
        each_attempt_a_message(gives_up)
        assert end.state == "FAILURE" and end.error == "ConnectionError", \
            f"{gives_up['call']} {end.describe()}; after its last retry it should fail with the ConnectionError"


class GiveUp(Exercise):
    id = "02.give_up"
    title = "Give up after two retries and surface the original error"
    module = "ex02_retries"
    functions = ("report",)
    praise = "Correct: three attempts half a second apart, and the final failure is the ValueError itself."

    def run(self, s, observed):
        seen, = attempts(s, task_of(s, "report"), [()], waits=[8])
        observed.append(describe(seen))
        return seen

    def judge(self, seen, observed):
        n, end = len(seen["starts"]), seen["end"]
        assert n > 1, "report ran once and failed: retry it with self.retry(...)"
        each_attempt_a_message(seen)
        assert n == 3, f"report ran {n} times; expected 3 (the first run plus max_retries=2)"
        assert all(0.3 <= g <= 1.5 for g in seen["gaps"]), f"gaps {seen['gaps']} s; the delay set above is 0.5 s"
        assert end.state == "FAILURE", f"report ended: {end.describe()}; after the last retry it must fail"
        assert end.error == "ValueError", (f"the last failure was {end.error}; pass the exception to the retry "
                                           "(exc=exc) so the original ValueError surfaces")


class Permanent(Exercise):
    id = "02.permanent"
    title = "Retry the temporary error, never the permanent one"
    module = "ex02_retries"
    functions = ("charge",)
    praise = ("Correct: the timeout was retried and the charge went through; the declined card failed at once; a "
              "gateway that stays down was tried four times, then given up.")

    def run(self, s, observed):
        task = task_of(s, "charge")
        tag = random.SystemRandom().randint(100, 999)
        # a gateway that stays down is given up within 0.7 s (4 attempts, 0.2 s apart); 3.5 s leaves room
        flaky, declined, down = attempts(s, task, [(f"flaky-{tag}",), (f"declined-{tag}",), (f"down-{tag}",)],
                                         waits=[6, 6, 3.5])
        observed += [describe(flaky), describe(declined), describe(down)]
        return {"flaky": flaky, "declined": declined, "down": down}

    def judge(self, seen, observed):
        flaky, declined, down = seen["flaky"], seen["declined"], seen["down"]
        order = flaky["args"][0]
        if flaky["end"].state == "FAILURE":
            raise AssertionError(f"{flaky['call']} failed with {flaky['end'].error} after {len(flaky['starts'])} "
                                 "attempt(s): a gateway timeout is temporary, retry it")
        assert flaky["end"].state == "SUCCESS" and flaky["end"].value == f"charged {order}", (
            f"{describe(flaky)}: the retry must come soon (a countdown; autoretry without one waits 180 s)")
        assert len(flaky["starts"]) == 2, (f"{flaky['call']} succeeded after {len(flaky['starts'])} attempt(s); the "
                                           "gateway times out once, so expect 2: let Celery retry it, not a loop")
        each_attempt_a_message(flaky)
        assert flaky["gaps"][0] <= 1.0, (f"{flaky['call']} was retried {flaky['gaps'][0]} s after the timeout; "
                                         "retry it 0.2 s later (a countdown)")
        assert len(declined["starts"]) == 1, (f"{declined['call']} ran {len(declined['starts'])} times: a declined "
                                              "card is permanent, retrying cannot help: name only GatewayTimeout in "
                                              "autoretry_for (or exclude CardDeclined with dont_autoretry_for)")
        assert declined["end"].state == "FAILURE" and declined["end"].error == "CardDeclined", \
            f"{declined['call']} {declined['end'].describe()}; it must fail with CardDeclined"
        n = len(down["starts"])
        assert n <= 4 and down["end"].state != "NO RESULT", (
            f"{describe(down)}: a gateway that stays down must be given up after 3 retries (max_retries=3; None "
            "means forever)")
        assert n == 4, f"{down['call']} made {n} attempts; expected 4: the first and 3 retries"
        each_attempt_a_message(down)
        assert down["end"].state == "FAILURE" and down["end"].error == "GatewayTimeout", \
            f"{down['call']} {down['end'].describe()}; after its last retry it should fail with GatewayTimeout"


backoff = Backoff()
give_up = GiveUp()
permanent = Permanent()
