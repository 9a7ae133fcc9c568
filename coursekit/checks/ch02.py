"""Chapter 02 exercises: retries, judged by the attempts the worker's events show."""
from __future__ import annotations

import time

from celery import Task

from .. import get, queues, record
from ..errors import ResultError
from ..exercise import Exercise, Incorrect, budget, check_worker


def attempts(exercise: Exercise, mod, name: str, args: tuple, wait: float) -> dict:
    """Run `mod.name(*args)` on a worker over the learner's module; return its attempts and how it ended."""
    from ..labs.retrying import app

    task = getattr(mod, name, None)
    if not isinstance(task, Task):
        raise Incorrect(f"{name} is not a task: keep its @app.task decorator (with bind=True)")
    queues.purge(app)
    with record(app) as recorder, check_worker(mod.__name__, cwd=exercise.folder.parent):
        result = task.delay(*args)
        try:
            outcome = ("SUCCESS", get(result, timeout=budget(wait)))
        except ResultError:
            outcome = ("NO RESULT", None)
        except Exception as exc:  # the task's final failure, re-raised by get()
            outcome = ("FAILURE", type(exc).__name__)
        time.sleep(0.3)  # the worker sends its last events in a batch
    runs = recorder.recording.runs
    starts = runs[runs.task_id == result.id].started.tolist()
    return {"call": f"{name}{args!r}".replace(",)", ")"), "outcome": outcome, "starts": starts,
            "gaps": [round(b - a, 2) for a, b in zip(starts, starts[1:])], "waited": wait}


def describe(seen: dict) -> str:
    state, value = seen["outcome"]
    end = {"SUCCESS": f"succeeded with {value!r}", "FAILURE": f"failed with {value}",
           "NO RESULT": f"had no final result after {seen['waited']:g} s"}[state]
    total = f", {seen['starts'][-1] - seen['starts'][0]:.1f} s from first to last" if len(seen["starts"]) > 1 else ""
    return f"{seen['call']}: {len(seen['starts'])} attempt(s), gaps {seen['gaps']} s{total}, {end}"


class Backoff(Exercise):
    id = "02.backoff"
    title = "Retry with exponential backoff, no jitter"
    module = "ex02_retries"
    functions = ("fetch",)
    praise = "Correct: four attempts, 1, 2 and 4 s apart, then success."

    def run(self, mod, observed):
        seen = attempts(self, mod, "fetch", (), wait=12)
        observed.append(describe(seen))
        return seen

    def judge(self, seen, observed):
        gaps, (state, _) = seen["gaps"], seen["outcome"]
        if len(seen["starts"]) == 1:
            assert state != "NO RESULT", (f"after the first attempt nothing more ran within {seen['waited']:g} s: a "
                                          "retry with no backoff waits default_retry_delay, 180 s")
            raise AssertionError("fetch ran once and did not retry: name ConnectionError in autoretry_for")
        for n, (gap, want) in enumerate(zip(gaps, [1, 2, 4]), 1):
            assert abs(gap - want) <= 0.4, (f"gap {n} was {gap} s; expected {want} s (backoff 1, 2, 4 s, no "
                                            "jitter: jitter makes the waits random)")
        assert len(gaps) >= 3, (f"after {len(gaps) + 1} attempts nothing more ran within {seen['waited']:g} s; "
                                "fetch fails 3 times, so expect 4 attempts")
        assert len(gaps) == 3, f"fetch made {len(gaps) + 1} attempts; it fails 3 times, so expect 4"
        assert state == "SUCCESS", f"fetch ended {seen['outcome']}; it should succeed on the 4th attempt"


class GiveUp(Exercise):
    id = "02.give_up"
    title = "Give up after two retries and surface the original error"
    module = "ex02_retries"
    functions = ("report",)
    praise = "Correct: three attempts half a second apart, and the final failure is the ValueError itself."

    def run(self, mod, observed):
        seen = attempts(self, mod, "report", (), wait=8)
        observed.append(describe(seen))
        return seen

    def judge(self, seen, observed):
        n, (state, value) = len(seen["starts"]), seen["outcome"]
        assert n > 1, "report ran once and failed: retry it with self.retry(...)"
        assert n == 3, f"report ran {n} times; expected 3 (the first run plus max_retries=2)"
        assert all(0.3 <= g <= 1.5 for g in seen["gaps"]), f"gaps {seen['gaps']} s; the delay set above is 0.5 s"
        assert state == "FAILURE", f"report ended {seen['outcome']}; after the last retry it must fail"
        assert value == "ValueError", (f"the last failure was {value}; pass the exception to the retry "
                                       "(exc=exc) so the original ValueError surfaces")


class Permanent(Exercise):
    id = "02.permanent"
    title = "Retry the temporary error, never the permanent one"
    module = "ex02_retries"
    functions = ("charge",)
    praise = "Correct: the timeout was retried and the charge went through; the declined card failed at once."

    def run(self, mod, observed):
        flaky = attempts(self, mod, "charge", ("flaky-1",), wait=6)
        declined = attempts(self, mod, "charge", ("declined-1",), wait=6)
        observed += [describe(flaky), describe(declined)]
        return {"flaky": flaky, "declined": declined}

    def judge(self, seen, observed):
        flaky, declined = seen["flaky"], seen["declined"]
        if flaky["outcome"][0] == "FAILURE":
            raise AssertionError(f"charge('flaky-1') failed with {flaky['outcome'][1]} after "
                                 f"{len(flaky['starts'])} attempt(s): a gateway timeout is temporary, retry it")
        assert flaky["outcome"] == ("SUCCESS", "charged flaky-1"), (
            f"charge('flaky-1') {describe(flaky).split(': ', 1)[1]}: the retry must come soon (a countdown; "
            "autoretry without one waits 180 s)")
        assert len(declined["starts"]) == 1, (f"charge('declined-1') ran {len(declined['starts'])} times: a "
                                              "declined card is permanent, retrying cannot help: name only GatewayTimeout in autoretry_for (or "
                                              "exclude CardDeclined with dont_autoretry_for)")
        assert declined["outcome"] == ("FAILURE", "CardDeclined"), \
            f"charge('declined-1') ended {declined['outcome']}; it must fail with CardDeclined"


backoff = Backoff()
give_up = GiveUp()
permanent = Permanent()
