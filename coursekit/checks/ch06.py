"""Chapter 06 exercises: lost tasks. The checks kill their own workers and judge by what really happened: the
ledger of side effects the tasks write (coursekit.Ledger), the result backend, the recorder's events, and what
Redis still holds (`unacked`)."""
from __future__ import annotations

import random
import time
import uuid

from .. import killlab, queues
from ..budget import budget
from ..calls import call
from ..checking import CheckWorker
from ..exercise import Exercise
from ..ledger import Ledger
from ..labs.losing import POISON, SLOW_EARLY, SLOW_LATE, started
from ..outcomes import Incorrect, Uncheckable
from ..trials import task_named

LAB = "coursekit.labs.losing"


def _reset(*books: Ledger) -> None:
    for book in books:
        book.clear()
        started(book.name).clear()


def _state(result) -> tuple[str, str]:
    """(state, exception name) the result backend holds for `result` now."""
    state = result.state
    error = type(result.result).__name__ if state == "FAILURE" else ""
    return state, error


class LostTaskExercise(Exercise):
    """A chapter 06 exercise whose check restarts the worker on the learner's module: `restart(s)` SIGKILLs nothing
    itself; it boots a new check worker, makes it read the exercise's queue, and hands it to the session, which kills
    it at the end."""

    def restart(self, s) -> CheckWorker:
        worker = CheckWorker(None, (s.path, s.name), cwd=s.path.parent.parent, exercise_id=self.id,
                             concurrency=self.concurrency)
        s.worker = worker  # the session's tear-down kills the current one
        worker.spawn()
        s._wait_for_worker()
        s.consume()
        return worker


# -- 1. no payment lost ------------------------------------------------------------------------------------------
class NoLoss(LostTaskExercise):
    id = "06.no_loss"
    module = "ex06_no_loss"
    functions = ("charge",)
    concurrency = 2  # a killed pool process is replaced only at the pool's next check (every 5 s): one goes on
    PATIENCE_S = 6.0
    """How long the check waits, once no payment is charged any more, for messages a killed worker held to come back."""

    def run(self, s, observed):
        task = task_named(s.mod, "charge")
        book = Ledger("ex06")
        _reset(book)
        tag = f"o{random.SystemRandom().randint(1000, 9999)}"
        n = random.SystemRandom().randint(30, 45)
        plan = killlab.orders(n, tag)
        ends = {0.9: SLOW_LATE, 0.1: SLOW_EARLY, 0.5: ""}  # pay() charges as the suffix says (killlab.share)
        batch = [(order + ends[killlab.share(plan, order)], seconds) for order, seconds in plan]
        queue = s.app.conf.task_default_queue
        sent: dict[str, object] = {}
        lives = iter(range(10))

        def start():
            if next(lives) == 0:  # the session's worker, booted with the module
                s.consume()
                return s.worker
            return self.restart(s)

        def send(order, _seconds):
            sent[order] = task.apply_async((order,))
            return sent[order]

        options = s.app.conf.broker_transport_options or {}
        vt = options.get("visibility_timeout", 3600)
        sweep = (options.get("unacked_restore_interval", 10), options.get("unacked_restore_throttle", 10))
        comes_back = all(isinstance(v, (int, float)) for v in (vt, *sweep)) and vt <= self.PATIENCE_S \
            and sweep[0] * sweep[1] <= self.PATIENCE_S  # kombu looks at `unacked` every interval x throttle seconds

        def held():
            """Messages that may still run: waiting, or held by a dead worker if they can come back while we wait."""
            waiting = queues.depth(s.app, queue)
            if comes_back:
                waiting += sum(q == queue for q in killlab.parked(s.app).values())
            return waiting

        killlab.free_lock(s.app)  # left taken by a worker an earlier check killed: restores would stall 300 s
        try:
            storm = killlab.storm(start, send, book, batch, budget_s=budget(24), held=held,
                                  patience_s=self.PATIENCE_S)
            if storm.problems or (storm.skipped and not storm.tally["lost"]):
                raise Uncheckable("the check could not kill its worker as planned: "
                                  + "; ".join(storm.problems + storm.skipped),
                                  fix="the machine may be busy: check again")
            rec = s.recording()
            runs = rec.runs
            parked = set(killlab.parked(s.app))
            transit = killlab.vanished(s.app, storm.tally["lost"], {o: r.id for o, r in sent.items()}, book)
            fates = {}
            for order in storm.tally["lost"]:
                mine = runs[runs.task_id == sent[order].id]
                fates[order] = ("transit" if order in transit else "held" if sent[order].id in parked
                                else "failed" if (mine.outcome == "FAILURE").any() else "acked" if len(mine)
                                else "waiting")
            lock = killlab.stuck_lock(s.app) if "held" in fates.values() and comes_back else None
            if lock is not None:
                raise Uncheckable("the whole-worker kill landed while that worker was sweeping `unacked`, and left "
                                  f"kombu's restore lock (unacked_mutex) taken for {lock} s more: until it expires no "
                                  "worker puts a held message back, whatever the settings (unacked_mutex_expire, "
                                  "default 300 s). That is a race of the check's kill, not your answer",
                                  fix="check again: the check frees the lock before it starts")
            if transit:
                observed.append(f"{transit[0]} was taken off the queue by the worker in the instant it was killed, "
                                "before kombu wrote it to `unacked`: no setting brings such a message back on Redis, "
                                "so the check does not count it (lesson 06, section 4)")
            observed += [storm.describe(), *storm.skipped]
            for kill in storm.kills:
                what = "the whole worker" if kill.kind == "worker" else \
                    f"the pool process running {kill.order} ({kill.kind} its charge)"
                observed.append(f"SIGKILL {kill.at - storm.began:.1f} s in: {what}")
            if storm.tally["duplicated"]:
                observed.append("charged twice (allowed: a payment killed after its charge runs again): "
                                + ", ".join(sorted(storm.tally["duplicated"])))
            # a child-kill target that failed, even if it ran again after: its message was not put back by the
            # worker; only kombu's sweep of `unacked` brought it back, before the worker noticed its dead process
            failed_kills = [k.order for k in storm.kills if k.kind != "worker" and k.order in sent
                            and k.order not in fates
                            and (runs[runs.task_id == sent[k.order].id].outcome == "FAILURE").any()]
            return {"storm": storm, "fates": fates, "n": n, "vt": vt, "sweep": sweep, "failed_kills": failed_kills,
                    "late": bool(getattr(task, "acks_late", s.app.conf.task_acks_late)),
                    "ack_failed": getattr(task, "acks_on_failure", None) is not False,
                    "misplaced": [name for name in ("result_backend_transport_options", "broker_connection_options")
                                  if "visibility_timeout" in (s.app.conf.get(name) or {})]}
        finally:
            killlab.unpark(s.app, [r.id for r in sent.values()])  # nothing of this check stays in `unacked`
            _reset(book)

    def judge(self, seen, observed):
        storm, fates, n = seen["storm"], seen["fates"], seen["n"]
        if seen.get("failed_kills") and list(fates.values()) in ([], ["transit"]):
            orders = ", ".join(seen["failed_kills"])
            raise AssertionError(
                f"{orders} was charged in the end, but when the check killed its pool process the worker recorded "
                "it as FAILURE (WorkerLostError) and did not put its message back"
                + (" (task_acks_on_failure(_or_timeout)=False rejects a failed message without requeueing it)"
                   if not seen["ack_failed"] else " (Celery acknowledges a failed task, acks_late or not)")
                + f". It ran again only because kombu's sweep restored it from `unacked` (visibility_timeout "
                f"{seen['vt']} s) before the worker noticed its dead process: a race, not a fix; with a longer "
                "visibility_timeout, or a quicker worker, it is lost. task_reject_on_worker_lost=True (or "
                "task_retry_on_worker_lost=True) makes the worker itself bring it back")
        if list(fates.values()) in ([], ["transit"]):  # a worker has at most one message in transit
            return
        by = {kind: sorted(o for o, f in fates.items() if f == kind)
              for kind in ("failed", "held", "acked", "waiting", "transit")}
        why = []
        if by["failed"] and seen["late"] and not seen["ack_failed"]:
            why.append(f"{', '.join(by['failed'])} failed with WorkerLostError when its pool process was killed, and "
                       "with task_acks_on_failure(_or_timeout)=False Celery rejected its message without requeueing "
                       "it: dropped, not acknowledged, not kept; only task_reject_on_worker_lost (or "
                       "task_retry_on_worker_lost) brings back a task whose pool process died")
        elif by["failed"] and seen["late"]:
            why.append(f"{', '.join(by['failed'])} failed with WorkerLostError when its pool process was killed, and "
                       "its message was acknowledged: Celery acknowledges a failed task, even with acks_late "
                       "(task_acks_on_failure=True); a lost worker must requeue it instead")
        elif by["failed"]:
            why.append(f"{', '.join(by['failed'])} failed with WorkerLostError when its pool process was killed: its "
                       "message had been acknowledged when it started (early ack, Celery's default), so nothing "
                       "could bring it back")
        if by["held"]:
            why.append(f"{len(by['held'])} ({', '.join(by['held'][:4])}{' ...' if len(by['held']) > 4 else ''}) were "
                       "still held unacknowledged by the killed worker (Redis's `unacked`): kombu brings such a "
                       + (f"message back once it is older than visibility_timeout ({seen['vt']} s here), and the "
                          f"check waits at most {self.PATIENCE_S:.0f} s after the last charge"
                          if not isinstance(seen["vt"], (int, float)) or seen["vt"] > self.PATIENCE_S else
                          f"message back once it is older than visibility_timeout ({seen['vt']} s here, short "
                          "enough), but it looks for such messages only when a worker starts and then every "
                          "unacked_restore_interval x unacked_restore_throttle seconds "
                          f"({seen['sweep'][0]} x {seen['sweep'][1]} here; kombu's defaults are 10 x 10, about "
                          f"100 s), and the check waits at most {self.PATIENCE_S:.0f} s after the last charge: set "
                          "both in broker_transport_options"))
            if seen.get("misplaced"):
                why[-1] += (f" (a visibility_timeout in {seen['misplaced'][0]} does not reach the broker's channel: "
                            "it goes in broker_transport_options)")
        if by["acked"]:
            why.append(f"{', '.join(by['acked'])} had been acknowledged when it started (early ack) and died with its "
                       "worker: no copy of its message was left anywhere")
        if by["waiting"]:
            why.append(f"{', '.join(by['waiting'])} never ran")
        if by["transit"]:
            why.append(f"{', '.join(by['transit'])} never began and is in no queue and not in `unacked`: taken by "
                       "a worker as it was killed (that one alone no setting saves)")
        raise AssertionError(f"{len(fates)} of {n} payments were never charged after the check's three kills: "
                             + "; ".join(why))


# -- 2. find them with inspect --------------------------------------------------------------------------------------
class Find(Exercise):
    id = "06.find"
    module = "ex06_find"
    functions = ("find",)
    lab = LAB

    def run(self, s, observed):
        from ..labs.losing import nap

        rng = random.SystemRandom()
        s.consume()
        done = [nap.apply_async((f"done-{i}", 0.01)) for i in range(rng.randint(1, 2))]
        for r in done:
            r.get(timeout=budget(6), propagate=False)
        busy = nap.apply_async(("busy", 25.0))
        _wait_until(lambda: busy.state == "STARTED" or _active(s, busy.id), budget(6))
        reserved = [nap.apply_async((f"behind-{i}", 0.1)) for i in range(rng.randint(1, 3))]
        scheduled = [nap.apply_async((f"later-{i}", 0.1), countdown=rng.randint(40, 60))
                     for i in range(rng.randint(1, 2))]
        other = nap.apply_async(("not-asked", 0.1))  # held too, but find() is not asked about it
        queue = s.app.conf.task_default_queue
        if not _wait_until(lambda: queues.depth(s.app, queue) == 0, budget(6)):
            raise Uncheckable("the check's worker did not take the planted tasks within 6 s", fix="check again")
        never = [str(uuid.uuid4()) for _ in range(rng.randint(1, 2))]
        expected = {busy.id: "active", **{r.id: "reserved" for r in reserved},
                    **{r.id: "scheduled" for r in scheduled}}
        asked = [busy.id, *(r.id for r in reserved + scheduled + done), *never]
        rng.shuffle(asked)
        observed.append(f"planted: 1 active, {len(reserved)} reserved, {len(scheduled)} with a countdown, "
                        f"{len(done)} done, {len(never)} never sent; find() was asked about these {len(asked)}, "
                        "not about one more reserved task")
        try:
            got = call(s.mod.find, asked, timeout=8, name="find(ids)", source=s.source)
            observed.append(f"find returned {_short(got.value)} in {got.seconds:.1f} s")
            s.worker.kill()  # now nobody answers
            alone = call(s.mod.find, asked, timeout=8, name="find(ids) with no worker running", source=s.source)
            observed.append(f"with no worker running, find returned {_short(alone.value)} in {alone.seconds:.1f} s")
        finally:
            s.worker.kill()
            held = [busy.id, other.id, *(r.id for r in reserved + scheduled)]
            killlab.unpark(s.app, held)  # nothing stays in `unacked`
        return {"expected": expected, "got": got.value, "alone": alone.value,
                "names": {busy.id: "the busy task", **{r.id: "a task behind it" for r in reserved},
                          **{r.id: "a task with a countdown" for r in scheduled},
                          **{r.id: "a finished task" for r in done}, **{i: "an id never sent" for i in never},
                          other.id: "a task it was not asked about"}}

    def judge(self, seen, observed):
        expected, got, names = seen["expected"], seen["got"], seen["names"]
        assert isinstance(got, dict), f"find returned {type(got).__name__}; return a dict: task id -> place"
        nested = [k for k, v in got.items() if isinstance(v, dict)]
        assert not nested, (f"find returned a dict keyed by {_short(nested[0])}, with a dict under it: key it by task "
                            "id, one place per task (the worker's name keys inspect()'s answer, not find's)")
        for task_id, place in expected.items():
            assert task_id in got, (f"find left out {names[task_id]} ({task_id[:8]}), which the worker holds: "
                                    f"inspect().{place}() lists it" + (
                                        "; a scheduled entry wraps the task under 'request'"
                                        if place == "scheduled" else ""))
            assert got[task_id] == place, (f"find placed {names[task_id]} ({task_id[:8]}) in {got[task_id]!r}; the "
                                           f"worker lists it under {place}")
        extra = [i for i in got if i not in expected]
        held = {i for i, what in names.items() if what == "a task it was not asked about"}
        unasked = ("a worker holds it, but find was not asked about it: return only the ids in task_ids"
                   if extra and extra[0] in held else "no worker holds it")
        assert not extra, (f"find returned {names.get(extra[0], 'an id it was not asked about')} ({extra[0][:8]}) as "
                           f"{got[extra[0]]!r}; {unasked}")
        alone = seen["alone"]
        assert alone == {}, (f"with no worker running find returned {_short(alone)}; it must return an empty dict "
                             "(each inspect() method returns None when nobody answers)")


def _active(s, task_id: str) -> bool:
    answer = s.app.control.inspect(destination=[s.worker.nodename], timeout=0.5).active() or {}
    return any(t.get("id") == task_id for tasks in answer.values() for t in tasks)


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{str(k)[:8]}: {v!r}" for k, v in value.items()) + "}"
    return repr(value)[:120]


# -- 3. a poison message fails fast ------------------------------------------------------------------------------
class FailFast(Exercise):
    id = "06.fail_fast"
    module = "ex06_fail_fast"
    functions = ("work",)
    WAIT_S = 20.0
    """A worker notices a dead pool process at its next pool check, up to 5 s later: three deaths fit in 20 s."""

    def run(self, s, observed):
        task = task_named(s.mod, "work")
        book = Ledger("ex06-fail")
        _reset(book)
        tag = random.SystemRandom().randint(1000, 9999)
        item, poison = f"item-{tag}", f"{POISON}{tag}"
        s.consume()
        try:
            first = task.apply_async((item,))
            entry = _wait_for(started(book.name), item, budget(8))
            if entry is None:
                raise Incorrect(f"work({item!r}) did not start within 8 s: its task must call process(item)")
            time.sleep(0.1)
            if entry["pid"] in s.worker.children:
                s.worker.kill_child(entry["pid"])
                observed.append(f"work({item!r}) began in pid {entry['pid']}; the check SIGKILLed that pool process")
            bad = task.apply_async((poison,))
            begun = time.monotonic()
            runs = started(book.name)
            # a fifth run already breaks the bound (at most 4): no need to watch the rest of a loop without end
            _wait_until(lambda: (bad.state == "FAILURE" or runs.counts()[poison] > 4) and first.ready(),
                        budget(self.WAIT_S))
            waited = time.monotonic() - begun
            _wait_until(lambda: first.ready(), budget(3))
            attempts = started(book.name).counts()
            seen = {"item": item, "poison": poison, "first": _state(first), "bad": _state(bad), "waited": waited,
                    "item_runs": attempts[item], "poison_runs": attempts[poison],
                    "charged": book.counts()[item], "retry": bool(getattr(task, "retry_on_worker_lost", False)),
                    "max_retries": getattr(task, "max_retries", 3),
                    "retry_delay": getattr(task, "default_retry_delay", 180),
                    "ack_failed": getattr(task, "acks_on_failure", None) is not False}
            observed.append(f"work({item!r}): {seen['item_runs']} run(s), ended {seen['first'][0]}")
            observed.append(f"work({poison!r}): {seen['poison_runs']} run(s) in {waited:.1f} s, state "
                            f"{seen['bad'][0]} {seen['bad'][1]}".rstrip())
            return seen
        finally:
            s.worker.kill()
            _reset(book)

    def judge(self, seen, observed):
        item, poison = seen["item"], seen["poison"]
        state, error = seen["first"]
        if state != "SUCCESS" or seen["charged"] < 1:
            said = (f"work({item!r}), whose pool process the check killed once, ended {state} {error}".rstrip()
                    + " and never finished: a task whose worker dies once (a deploy, an OOM kill of a neighbour) must "
                      "run again")
            if state == "FAILURE" and seen.get("retry") and seen.get("max_retries") == 0:
                raise AssertionError(f"{said}. task_retry_on_worker_lost is on, but max_retries=0 allows no retry")
            if state == "FAILURE" and not seen.get("ack_failed", True):
                raise AssertionError(f"{said}. With task_acks_on_failure(_or_timeout)=False Celery rejects the "
                                     "failed message without requeueing it (dropped): nothing runs it again")
            if state == "FAILURE":
                raise AssertionError(f"{said}. With acks_late alone Celery acknowledges it as failed "
                                     "(task_acks_on_failure=True)")
            if state == "RETRY":
                raise AssertionError(f"{said}, and it was still waiting for its retry: a retry after a lost worker "
                                     "waits the task's default_retry_delay (180 s unless set)")
            raise AssertionError(f"{said}, and nothing more happened within {seen['waited']:.0f} s")
        runs, (bad, bad_error) = seen["poison_runs"], seen["bad"]
        if bad != "FAILURE":
            said = (f"work({poison!r}) kills its pool process every time; it ran {runs} time(s) in "
                    f"{seen['waited']:.0f} s")
            most = seen.get("max_retries")
            if seen.get("retry") and seen.get("retry_delay", 180) < seen["waited"] / 4 \
                    and bad in ("RETRY", "STARTED", "RECEIVED", "PENDING"):
                # quick retries after each lost worker, still going: on a busy machine fewer runs fit in the wait,
                # so the bound they have is judged, not how many were seen
                if most is None:
                    raise AssertionError(f"{said} and was still going ({bad}): it is retried after every death, "
                                         "without end (retries with max_retries=None never stop). Bound the "
                                         "attempts: at most 4 runs (the first and up to 3 retries)")
                if most > 3:
                    raise AssertionError(f"{said} and was still retrying with max_retries={most}: bound the "
                                         "attempts to at most 4 runs (the first and up to 3 retries)")
                if runs <= most + 1:  # the right settings, on a machine too busy to finish them within the wait
                    raise Uncheckable(f"{said} and was still {bad}: a retry after a lost worker, bounded to "
                                      f"{most} and {seen['retry_delay']} s apart, should have ended FAILURE by "
                                      "now, so the machine is too busy to judge this",
                                      fix="check again when the machine is quieter")
            if runs == 4 and bad == "RETRY":  # a busy machine replaces the dead process slowly: 4 runs in the wait
                raise AssertionError(f"{said} and was waiting for one more retry: bound the attempts to at most 4 "
                                     "runs (the first and up to 3 retries) with max_retries")
            if runs > 4 or (runs >= 2 and bad != "RETRY"):
                # 2-4 runs in the wait only on a busy machine: the same loop, seen for a shorter time, same words
                raise AssertionError(f"{said} and was still going ({bad}): it is sent again after every death, "
                                     "without end (task_reject_on_worker_lost requeues it each time, and "
                                     "max_retries does not count requeues; retries with max_retries=None never "
                                     "stop). Bound the attempts: at most 4 runs (the first and up to 3 retries)")
            if bad == "RETRY":
                raise AssertionError(f"{said} and was waiting for a retry: a retry after a lost worker waits the "
                                     "task's default_retry_delay (180 s unless set), and max_retries bounds how many "
                                     "come; it must end FAILURE soon")
            raise AssertionError(f"{said} and was still {bad}, with no failure recorded: it must end FAILURE soon")
        assert runs <= 4, (f"work({poison!r}) failed, but only after {runs} runs; at most 4 (the first and up to "
                           "3 retries)")
        assert bad_error == "WorkerLostError", (f"work({poison!r}) failed with {bad_error}; it should fail with the "
                                                "WorkerLostError of its dead pool process, where a monitor sees it")


def _wait_for(book: Ledger, key, seconds: float) -> dict | None:
    found: list[dict] = []

    def look() -> bool:
        found[:] = [e for e in book.entries() if e["key"] == key]
        return bool(found)

    return found[0] if _wait_until(look, seconds) else None


no_loss = NoLoss()
find = Find()
fail_fast = FailFast()
