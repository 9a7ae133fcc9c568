"""Chapter 07 exercises: duplicates and stuck tasks, judged by side effects and states, not by code.

07.payment delivers one payment three times, as production does: two copies of one message at once (a redelivery
while the first still runs), then, once the first charge has ended, a second publish with a new task id; and another
order once. The lab's `db()` answers each command 0.1 s late, as a database over a network does, so a read-then-write
race between the two copies shows on every run. The side-effect
ledger `payments` (written by the lab's `charge`) must hold exactly one charge per order.
07.export runs a normal export and one whose render never returns: the stuck one must end within 2 s of its start,
FAILED, with its cleanup run (a marker in the ledger `cleanups`); the normal one must succeed, with no cleanup (it
would delete the file just written).
07.pool starts the learner's worker line and sends a CPU loop longer than its hard time limit: the limit must fire.
"""
from __future__ import annotations

import random
import time
import uuid

from ..budget import budget
from ..calls import send
from ..evidence import ending
from ..exercise import Exercise
from ..fleet import pool_of
from ..labs.duplicates import payments
from ..labs.stuck import cleanups
from ..outcomes import Incorrect, Uncheckable
from ..trials import task_named
from ..workerlines import parse_workers

PAY_WAIT_S = 5.0
"""How long the check waits for the first two copies to end, and then again for the last two deliveries."""
LATE_COPY_GAP_S = 0.3
"""How long after the first charge is in the ledger the check publishes the third delivery."""
EXPORT_BOUND_S = 2.0
"""The stuck export must end within this long of its start."""
EVENT_SLACK_S = 0.3
"""Worker events carry the times the worker saw; under load they lag the task itself by up to this much."""


def tag() -> str:
    return f"{random.SystemRandom().randint(10000, 99999)}"


def overlapped(runs: list[dict]) -> bool:
    """True when the second run started before the first ended (both per the worker's events)."""
    if len(runs) < 2:
        return False
    first, second = sorted(runs, key=lambda r: r["started"])[:2]
    return first["ended"] != first["ended"] or second["started"] < first["ended"]  # NaN: the first never ended


def keys_naming(word: str) -> list[str]:
    """Redis keys in the course namespace (or anywhere the client may look) whose name holds `word` (an order, a
    task id): where a task that wrote its idempotency flag left it."""
    from ..ledger import client

    try:
        return sorted(k.decode() if isinstance(k, bytes) else k for k in client().scan_iter(match=f"*{word}*",
                                                                                           count=500))
    except Exception:  # an ACL that forbids SCAN: the verdict does without this detail
        return []


def charged_yet(order: str, bound: float) -> None:
    """Wait up to `bound` s until the ledger holds a charge for `order`: the copy that charged is then done with it
    (whatever it does after, releasing a lock say, takes well under LATE_COPY_GAP_S)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and not any(e["key"] == order for e in payments().entries()):
        time.sleep(0.05)


def late_why(seen: dict, keys: list[str]) -> str:
    """Why a delivery that came after the first charge had ended charged again, from the keys left behind."""
    by_id = [key for key in keys_naming(seen["copy_id"]) + keys_naming(seen["late"])
             if "celery-task-meta-" not in key]  # the result backend's own keys name the task id too
    if by_id:
        return (f"the claim ({by_id[0]}) is keyed on the task id. Key it on the order, the business key, which every "
                "delivery of this payment shares")
    if len(keys) >= 2:
        return (f"each delivery claimed a key of its own ({', '.join(keys[:3])}): the key holds something that "
                "changes from one delivery to the next. Key the claim on the order alone")
    if not keys:
        return ("no key for the order was left by then: the claim was deleted after the charge (a lock released in "
                "finally) or expired (a TTL shorter than the time between deliveries). An idempotency key must "
                "outlive every redelivery: keep it, with a long expiry (ex=3600 or more)")
    return "key the claim on the order, the business key, not on the task id, and keep it"


class Payment(Exercise):
    id = "07.payment"
    module = "ex07_payment"
    functions = ("pay",)
    concurrency = 2  # two copies of one message must be able to run at once

    def run(self, s, observed):
        pay = task_named(s.mod, "pay")
        rng = random.SystemRandom()
        twice, once = f"order-{tag()}", f"order-{tag()}"
        amount, other = rng.randint(5, 500), rng.randint(5, 500)
        s.consume()
        copy_id = str(uuid.uuid4())
        # a redelivery: the same message, same task id, while the first copy still runs
        pair = [send(pay, (twice, amount), s.source, task_id=copy_id) for _ in range(2)]
        begun = time.monotonic()
        first_end = ending(pair[0], budget(PAY_WAIT_S), sent=begun)
        # The copy that skips stores its result first: wait for the one that charged, so that the next delivery
        # comes after the first payment is over, as a client's retry does (a claim deleted or expired by then shows)
        charged_yet(twice, max(0.1, begun + budget(PAY_WAIT_S) - time.monotonic()))
        time.sleep(LATE_COPY_GAP_S)
        late_sent = time.time()
        late = send(pay, (twice, amount), s.source)  # the client called again: a new task id
        single = send(pay, (once, other), s.source)
        ends = [first_end] + [ending(r, budget(max(0.1, begun + 2 * PAY_WAIT_S - time.monotonic())), sent=begun)
                              for r in (late, single)]
        runs = s.runs([copy_id, late.id, single.id])
        entries = [e for e in payments().entries() if e["key"] in (twice, once)]
        charged = {key: [e for e in entries if e["key"] == key] for key in (twice, once)}
        observed.append(f"pay{(twice, amount)!r}: delivered 3 times (twice at once as task {copy_id[:8]}, then as a "
                        f"new task); charged {len(charged[twice])} time(s)")
        observed.append(f"pay{(once, other)!r}: delivered once; charged {len(charged[once])} time(s)")
        return {"twice": twice, "once": once, "amount": amount, "other": other, "charged": charged,
                "runs": runs, "copy_id": copy_id, "late": late.id, "single": single.id, "ends": ends,
                "late_sent": late_sent, "app": s.app, "task": pay}

    def judge(self, seen, observed):
        twice, once, charged, runs = seen["twice"], seen["once"], seen["charged"], seen["runs"]
        labels = (f"pay({twice!r}, {seen['amount']})", f"pay({twice!r}, {seen['amount']}) sent again",
                  f"pay({once!r}, {seen['other']})")
        for label, end in zip(labels, seen["ends"]):
            assert end.state != "NO RESULT", f"{label} {end.describe()}: the payment task must end"
            assert end.state == "SUCCESS", (f"{label} {end.describe()}: a duplicate must end quietly (return), not "
                                            "fail: a failure is retried, alerted on, or shown to the customer")
        copies = runs[seen["copy_id"]]
        if len(copies) == 2 and not overlapped(copies) and len(charged[twice]) <= 1:
            raise Uncheckable("the two copies of one message did not run at the same time (the machine may be "
                              "busy), so the race was not tested", fix="check again")
        n = len(charged[twice])
        assert n > 0, (f"{labels[0]} was delivered 3 times and charged 0 times: the payment must happen once "
                       "(call charge(order, amount))")
        bad_amount = [e for e in charged[twice] + charged[once] if e.get("amount") not in (seen["amount"],
                                                                                          seen["other"])]
        assert not bad_amount, f"a charge carried amount {bad_amount[0].get('amount')!r}: pass the task's amount on"
        assert len(charged[once]) == 1, (
            f"{labels[2]}, another order, was charged {len(charged[once])} time(s), though it was delivered once: "
            + ("the claim must be per order (a business key such as business_key(order)), not one for every payment"
               if not charged[once] else "only a delivery of an order already paid may skip the charge"))
        if n == 1:
            return
        early = [e for e in charged[twice] if e["at"] < seen["late_sent"]]
        said = f"{labels[0]} was delivered 3 times and charged {n} times"
        dedup = seen["app"].conf.worker_deduplicate_successful_tasks
        if dedup:
            said += ("; worker_deduplicate_successful_tasks only skips a redelivered acks_late message whose SUCCESS "
                     "is already stored: not two copies at once, nor a second publish with a new task id")
        keys = keys_naming(twice)
        if len(early) >= 2:
            why = ("the two copies that ran at the same time were both charged: the check and the write are two "
                   "steps, and both copies read 'unpaid' before either wrote. Claim the order with ONE atomic "
                   "command before charging: db().set(business_key(order), 1, nx=True, ex=3600)")
            if n >= 3 and len(keys) >= 2:
                why = (f"each delivery claimed a key of its own ({', '.join(keys[:3])}): the key holds something that "
                       "changes from one delivery to the next (a time, a task id). Key the claim on the order alone")
            elif n >= 3 and keys:
                why = (f"a key for the order exists ({keys[0]}), yet every delivery charged: it was written after "
                       "the charge, or never read before it. Claim the order atomically BEFORE the side effect")
            elif n >= 3:
                why = "nothing stopped a copy: claim the order (its business key) atomically before charging"
            raise AssertionError(f"{said}: {why}")
        raise AssertionError(f"{said}: the copies with one task id charged once, but the second publish (a new task "
                             f"id), sent after the first charge had ended, charged again: {late_why(seen, keys)}")


class Export(Exercise):
    id = "07.export"
    module = "ex07_export"
    functions = ("export",)
    concurrency = 2  # the normal export and the stuck one side by side: the check stays short

    def run(self, s, observed):
        export = task_named(s.mod, "export")
        rng = random.SystemRandom()
        quick = (f"invoices-{tag()}", round(rng.uniform(0.2, 0.5), 2))
        hung = (f"ledger-{tag()}", rng.randint(600, 3600))  # render would take minutes: a stuck call
        s.consume()
        results = [send(export, args, s.source) for args in (quick, hung)]
        begun = time.monotonic()
        ends = [ending(r, budget(max(0.1, begun + 4.5 - time.monotonic())), sent=begun) for r in results]
        runs = s.runs([r.id for r in results])
        cleaned = cleanups().counts()
        calls = [f"export{args!r}" for args in (quick, hung)]
        for call, end, result in zip(calls, ends, results):
            mine = runs[result.id]
            took = f", ran {mine[0]['ended'] - mine[0]['started']:.2f} s" if mine and mine[0]["ended"] == \
                mine[0]["ended"] else ""
            observed.append(f"{call}: {end.describe()}{took}")
        observed.append(f"cleanup ran for: {[job for job in (quick[0], hung[0]) if cleaned[job]] or 'none'}")
        return {"calls": calls, "ends": ends, "runs": [runs[r.id] for r in results], "quick": quick, "hung": hung,
                "cleaned": cleaned, "task": export, "app": s.app}

    def judge(self, seen, observed):
        (quick_call, hung_call), (quick_end, hung_end) = seen["calls"], seen["ends"]
        task, app = seen["task"], seen["app"]
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        limits = f"(soft_time_limit={soft}, time_limit={hard})"
        if quick_end.state == "FAILURE" and "TimeLimitExceeded" in quick_end.error:
            raise AssertionError(f"{quick_call} {quick_end.describe()}: a normal export takes up to 0.6 s, and your "
                                 f"limit {limits} stopped it. Set it above that, and below 2 s")
        assert quick_end.state == "SUCCESS", f"{quick_call} {quick_end.describe()}; a normal export must succeed"
        assert quick_end.value == f"rendered {seen['quick'][0]}", (
            f"{quick_call} returned {quick_end.value!r}: return what render(job, seconds) returns")
        cleaned = seen["cleaned"][seen["hung"][0]] > 0
        if hung_end.state == "NO RESULT":
            if soft is None and hard is None:
                why = "no time limit stopped it"
                expires = task.expires if task.expires is not None else app.conf.task_default_expires
                if expires is not None:
                    why += (f" (expires={expires} only drops a message that waits that long before a worker starts "
                            "it: this one started at once)")
            else:
                why = f"its limits {limits} did not stop it within 2 s"
            raise AssertionError(f"{hung_call} was still running {hung_end.waited} s after it was sent: {why}. Give "
                                 "export a soft_time_limit under 2 s")
        run = seen["runs"][1][0] if seen["runs"][1] else None
        took = run["ended"] - run["started"] if run and run["ended"] == run["ended"] else None
        if hung_end.error == "TimeLimitExceeded" and soft is not None and not cleaned:
            raise AssertionError(f"{hung_call} {hung_end.describe()}, and cleanup(job) never ran: the hard limit "
                                 f"killed its process as the soft one fired {limits}, with no time left to clean up. "
                                 "Give time_limit room above soft_time_limit (or leave it out)")
        if hung_end.error == "TimeLimitExceeded" and not cleaned:
            raise AssertionError(f"{hung_call} {hung_end.describe()}, and cleanup(job) never ran: a hard time_limit "
                                 "kills the pool process, so no except or finally runs. Use soft_time_limit, which "
                                 "raises SoftTimeLimitExceeded inside the task, and clean up there")
        if hung_end.error == "TimeLimitExceeded" and cleaned:
            raise AssertionError(f"{hung_call} {hung_end.describe()}: the hard limit killed its process while it was "
                                 f"still cleaning up after the soft one {limits}. cleanup(job) finished this time only "
                                 "because it is quick. Give time_limit room above soft_time_limit (or leave it out)")
        if not cleaned:
            said = f"{hung_call} {hung_end.describe()}, but cleanup(job) never ran for it"
            wrong_key = [key for key in (seen["quick"][1], seen["hung"][1]) if seen["cleaned"][key]]
            if wrong_key:
                raise AssertionError(f"{said}: cleanup ran for {wrong_key[0]!r}, the seconds, not the job: call "
                                     "cleanup(job)")
            if seen["cleaned"][seen["quick"][0]]:
                raise AssertionError(f"{said}, only for the normal export, which succeeded: clean up where the "
                                     "limit is caught (except SoftTimeLimitExceeded), not on success")
            raise AssertionError(
                f"{said}: nothing caught SoftTimeLimitExceeded, the exception a soft limit raises inside the task "
                "(with no handler, or one for another exception, the limit only fails the task). Catch "
                "SoftTimeLimitExceeded around render(), call cleanup(job), then re-raise")
        if seen["cleaned"][seen["quick"][0]]:
            raise AssertionError(f"cleanup(job) ran for {quick_call} too, which succeeded: it deletes the file the "
                                 "export has just written. Clean up only when the limit interrupts the task (except "
                                 "SoftTimeLimitExceeded), not in finally")
        if hung_end.state == "SUCCESS":
            raise AssertionError(f"{hung_call} cleaned up, then returned {hung_end.value!r}, so it ended SUCCESS: "
                                 "re-raise after cleanup(job), so the caller (and your monitoring) see that the "
                                 "export failed")
        assert hung_end.state == "FAILURE", f"{hung_call} {hung_end.describe()}; it must end in FAILURE"
        assert took is not None and took <= EXPORT_BOUND_S + EVENT_SLACK_S, (
            f"{hung_call} ended {took:.2f} s after it started" if took is not None else
            f"{hung_call}: the worker's events do not show when it ended") + \
            f": its limits {limits} did not stop it within 2 s"


GREEN_POOLS = {
    "gevent": "gevent ignores soft_time_limit and enforces time_limit only when the task yields (gevent.Timeout), so "
              "a CPU loop such as crunch runs to its end before it fails",
    "eventlet": "eventlet ignores both time limits, without a warning",
}
"""What the greenlet pools do with time limits (celery-facts 9), for a line that names one."""


class Pool(Exercise):
    id = "07.pool"
    module = "ex07_pool"
    functions = ("WORKERS",)
    fleet = True

    def run(self, s, observed):
        try:
            lines = parse_workers(getattr(s.mod, "WORKERS", None), s.name, mod=s.mod)
        except Uncheckable as exc:  # a pool the course does not install: here it is the wrong answer anyway
            pool = next((p for p in GREEN_POOLS if f"-P {p} needs" in str(exc)), None)
            if pool is None:
                raise
            raise Incorrect(f"{exc}, and it would not pass either: {GREEN_POOLS[pool]}",
                            fix="pick a pool that can signal or kill the process running the task") from None
        if len(lines) != 1:
            raise Incorrect(f"WORKERS names {len(lines)} workers; deploy one, for the reports",
                            fix='e.g. {"reports": "celery -A workspace.ex07_pool worker -c 2"}')
        crunch = task_named(s.mod, "crunch")
        fleet = s.start_fleet(lines)
        observed += fleet.describe()
        rng = random.SystemRandom()
        long_s, short_s = round(rng.uniform(2.5, 3.2), 1), round(rng.uniform(0.1, 0.3), 2)
        calls = [(crunch, (long_s,)), (crunch, (short_s,))]
        jobs = fleet.jobs([(task, args, fleet.send(task, args)) for task, args in calls], wait=long_s + 3)
        observed += [job.describe() for job in jobs]
        return {"jobs": jobs, "fleet": fleet, "long": long_s, "task": crunch, "app": s.app}

    def judge(self, seen, observed):
        long_job, short_job = seen["jobs"]
        fleet, task, app = seen["fleet"], seen["task"], seen["app"]
        worker = fleet.workers[0].name
        pool = pool_of(fleet.stats.get(worker, {}))
        limit = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert limit or soft, (f"crunch has no time limit (time_limit={limit}): keep @app.task(time_limit=1) as "
                               "given; the exercise is the pool that enforces it")
        assert long_job.runs, f"{long_job.describe()}: the worker never started it"
        if long_job.end.state == "SUCCESS":
            took = f" in {long_job.ended - long_job.started:.1f} s" if long_job.ended is not None else ""
            raise AssertionError(f"{long_job.call} ran to its end{took} and returned SUCCESS on worker {worker} "
                                 f"({pool}), though crunch has time_limit={limit}: the {pool.split()[0]} pool ignores "
                                 "time limits, without a warning. Pick a pool that can signal or kill the process "
                                 "running the task")
        assert long_job.end.state == "FAILURE" and "TimeLimitExceeded" in long_job.end.error, (
            f"{long_job.describe()}; the time limit should have stopped it (TimeLimitExceeded)")
        if long_job.ended is not None:
            took = long_job.ended - long_job.started
            green = GREEN_POOLS.get(pool.split()[0])  # gevent, installed since chapter 09: it does fail, late
            assert took <= (limit or soft) + 0.6, (f"{long_job.call} was stopped only after {took:.1f} s, though "
                                                   f"its limit is {limit or soft} s ({pool})"
                                                   + (f": {green}" if green else ""))
        assert short_job.end.state == "SUCCESS", f"{short_job.describe()}; a short crunch must succeed"


payment = Payment()
export = Export()
pool = Pool()
