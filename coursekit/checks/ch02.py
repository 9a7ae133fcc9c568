"""Chapter 02 exercises: retries, judged by the attempts the worker's events show: how many, how far apart, each
one a message of its own through the broker, on the check's worker, and how the last one ended."""
from __future__ import annotations

import random

from ..exercise import Exercise
from ..trials import Trial, task_named


class RetryExercise(Exercise):
    """A chapter 02 exercise: the check sends `calls()` of the exercise's task (its one function) to the worker,
    and `judge` reads the attempts of each, one `Trial` per call."""

    module = "ex02_retries"

    def calls(self, rng: random.Random) -> list[tuple[tuple, float]]:
        """(args, how long to wait for that call to end, in s from the sending)."""
        raise NotImplementedError

    def run(self, s, observed):
        task = task_named(s.mod, self.functions[0], bound=True)
        trials = s.run_on_worker(task, self.calls(random.SystemRandom()))
        observed += [trial.attempts() for trial in trials]
        return trials


def ran_in_the_pool(trial: Trial) -> None:
    assert not trial.elsewhere, f"{trial.call} ran outside the check worker's pool processes"


def backoff_gaps(trial: Trial, late_ok: bool = False) -> None:
    """Gaps between attempts' starts of 1, 2 and 4 s. With `late_ok`, only never early: a gap also holds the failed
    attempt's own run, and on a busy machine (or with another call's attempts on the same pool process) that adds
    tenths of a second; jitter, by contrast, draws whole seconds below the backoff (0..N)."""
    for n, (gap, want) in enumerate(zip(trial.gaps, [1, 2, 4]), 1):
        ok = gap >= want - 0.4 if late_ok else abs(gap - want) <= 0.4
        assert ok, (f"{trial.call}: gap {n} was {gap} s; expected {want} s (backoff 1, 2, 4 s, no jitter: jitter "
                    "makes the waits random)")


class Backoff(RetryExercise):
    id = "02.backoff"
    functions = ("fetch",)

    def calls(self, rng):
        return [((3,), 10), ((rng.randint(4, 9),), 10)]  # the second fails for longer than three retries cover

    def judge(self, seen, observed):
        recovers, gives_up = seen
        end, gaps = recovers.end, recovers.gaps
        if len(recovers.starts) == 1:
            assert end.state != "NO RESULT", (f"after the first attempt nothing more ran within {recovers.waited:g} "
                                              "s: a retry with no backoff waits default_retry_delay, 180 s")
            assert end.state != "SUCCESS", (f"{recovers.call} succeeded in one attempt: its retries happened "
                                            "inside that one run, not as new attempts; let Celery retry "
                                            "(autoretry_for)")
            raise AssertionError(f"{recovers.call} ran once and did not retry: name ConnectionError in "
                                 "autoretry_for")
        ran_in_the_pool(recovers)
        backoff_gaps(recovers)
        assert len(gaps) >= 3, (f"{recovers.call}: after {len(gaps) + 1} attempts nothing more ran within "
                                f"{recovers.waited:g} s; it fails 3 times, so expect 4 attempts")
        assert len(gaps) == 3, f"{recovers.call} made {len(gaps) + 1} attempts; it fails 3 times, so expect 4"
        assert end.state == "SUCCESS", f"{recovers.call} {end.describe()}; it should succeed on the 4th attempt"
        end, n = gives_up.end, len(gives_up.starts)
        assert n <= 4 and end.state != "NO RESULT", (
            f"{gives_up.call} was still retrying after {n} attempts ({gives_up.attempts()}): stop after 3 "
            "retries (max_retries=3; None means forever)")
        assert n == 4, f"{gives_up.call} made {n} attempts; expected 4: the first and 3 retries"
        ran_in_the_pool(gives_up)
        backoff_gaps(gives_up, late_ok=True)  # a second run of waits: jitter rarely draws the full wait six times
        assert end.state == "FAILURE" and end.error == "ConnectionError", \
            f"{gives_up.call} {end.describe()}; after its last retry it should fail with the ConnectionError"


class GiveUp(RetryExercise):
    id = "02.give_up"
    functions = ("report",)

    def calls(self, rng):
        return [((), 8)]

    def judge(self, seen, observed):
        trial, = seen
        n, end = len(trial.starts), trial.end
        assert n > 1, "report ran once and failed: retry it with self.retry(...)"
        ran_in_the_pool(trial)
        assert n == 3, f"report ran {n} times; expected 3 (the first run plus max_retries=2)"
        # the eta is 0.5 s ahead, and a start is never early: late by up to half a second on a busy machine
        assert all(0.45 <= g <= 1.0 for g in trial.gaps), (f"report's retries came {trial.gaps} s apart; the delay "
                                                           "set above is 0.5 s (default_retry_delay, or the "
                                                           "retry's countdown)")
        assert end.state == "FAILURE", f"report ended: {end.describe()}; after the last retry it must fail"
        assert end.error == "ValueError", (f"the last failure was {end.error}; pass the exception to the retry "
                                           "(exc=exc) so the original ValueError surfaces")


class Permanent(RetryExercise):
    id = "02.permanent"
    functions = ("charge",)

    def calls(self, rng):
        tag = rng.randint(100, 999)
        # a gateway that stays down is given up within 0.7 s (4 attempts, 0.2 s apart); 3.5 s leaves room
        return [((f"flaky-{tag}",), 6), ((f"declined-{tag}",), 6), ((f"down-{tag}",), 3.5)]

    def judge(self, seen, observed):
        flaky, declined, down = seen
        order = flaky.args[0]
        if flaky.end.state == "FAILURE":
            raise AssertionError(f"{flaky.call} failed with {flaky.end.error} after {len(flaky.starts)} "
                                 "attempt(s): a gateway timeout is temporary, retry it")
        assert flaky.end.state == "SUCCESS" and flaky.end.value == f"charged {order}", (
            f"{flaky.attempts()}: the retry must come soon (a countdown; autoretry without one waits 180 s)")
        assert len(flaky.starts) == 2, (f"{flaky.call} succeeded after {len(flaky.starts)} attempt(s); the "
                                        "gateway times out once, so expect 2: let Celery retry it, not a loop")
        ran_in_the_pool(flaky)
        assert flaky.gaps[0] <= 1.0, (f"{flaky.call} was retried {flaky.gaps[0]} s after the timeout; "
                                      "retry it 0.2 s later (a countdown)")
        assert len(declined.starts) == 1, (f"{declined.call} ran {len(declined.starts)} times: a declined "
                                           "card is permanent, retrying cannot help: name only GatewayTimeout in "
                                           "autoretry_for (or exclude CardDeclined with dont_autoretry_for)")
        assert declined.end.state == "FAILURE" and declined.end.error == "CardDeclined", \
            f"{declined.call} {declined.end.describe()}; it must fail with CardDeclined"
        n = len(down.starts)
        assert n <= 4 and down.end.state != "NO RESULT", (
            f"{down.attempts()}: a gateway that stays down must be given up after 3 retries (max_retries=3; None "
            "means forever)")
        assert n == 4, f"{down.call} made {n} attempts; expected 4: the first and 3 retries"
        ran_in_the_pool(down)
        assert down.end.state == "FAILURE" and down.end.error == "GatewayTimeout", \
            f"{down.call} {down.end.describe()}; after its last retry it should fail with GatewayTimeout"


backoff = Backoff()
give_up = GiveUp()
permanent = Permanent()
