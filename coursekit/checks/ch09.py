"""Chapter 09 exercises: pools, judged from what the learner's worker line (WORKERS) really did.

Each check starts the one worker its WORKERS names (`fleet.py`), sends a burst of a size and a length it draws,
and reads every task's own report: the process and the thread or greenlet that ran it, its start and end, and for
crunches the CPU time its thread used (`coursekit.labs.pools.lane`).
09.io: fetches that wait must all be in flight at once, on one modest process. 09.cpu: crunches must run in two
processes at the same moment. 09.limit: a fetch that hangs must be stopped by a time limit while a burst of normal
fetches still runs in one round.
"""
from __future__ import annotations

import random

from ..budget import budget
from ..exercise import Exercise
from ..fleet import pool_kind, pool_of
from ..outcomes import Incorrect
from ..poolplots import at_once
from ..trials import task_named
from ..workerlines import parse_workers

MAX_WAITING_PROCESSES = 8
"""A prefork pool bigger than this for tasks that only wait is judged before it starts: a process each."""
ROUND_SLACK_S = 1.5
"""One round of fetches may take this much longer than one fetch (sending, starting, a loaded machine)."""
LIMIT_BOUND_S = 2.0
"""A hung fetch must end within this long of its start."""
EVENT_SLACK_S = 0.5


def one_line(s, example: str):
    """The one worker WORKERS names, checked before it starts."""
    lines = parse_workers(getattr(s.mod, "WORKERS", None), s.name, mod=s.mod)
    if len(lines) != 1:
        raise Incorrect(f"WORKERS names {len(lines)} workers; the exercise deploys one", fix=f"e.g. {example}")
    note = unpatched_note(lines[0], s.app)
    if note:  # judged before it starts: such a worker logs "ready", then never answers a ping (seen, 20 s)
        raise Incorrect(f"{lines[0].name}: {note[2:]}; started so, the worker logs 'ready' and then answers nothing",
                        fix="write `-P gevent` (with the space) or `--pool=gevent` on the command line")
    return lines[0]


def effective_pool(line, app) -> str:
    """prefork, threads, gevent, solo... as the worker will start: the line's -P, else worker_pool."""
    return pool_kind(line.pool or app.conf.worker_pool)


def unpatched_note(line, app) -> str:
    """Why a gevent worker ran nothing (or one task at a time): it was started without monkey patching."""
    if effective_pool(line, app) != "gevent":
        return ""
    if line.pool is None:
        how = f"worker_pool={app.conf.worker_pool!r} in the app's settings"
    elif line.unpatched:
        how = f"the line writes the pool as {next(o for o in line.options if o.startswith('-Pg'))!r}"
    else:
        return ""
    return (f". {how} starts a gevent pool WITHOUT monkey patching: the `celery` command patches the standard "
            "library only when it sees `-P gevent`, `--pool gevent` or `--pool=gevent` on its command line, so "
            "time.sleep and sockets block the one thread every greenlet shares")


def too_many_processes(line, app, what: str) -> None:
    """Judge, before anything starts, a prefork pool sized for waiting: a process for each task in flight."""
    size = line.concurrency or app.conf.worker_concurrency
    if effective_pool(line, app) == "prefork" and isinstance(size, int) and size > MAX_WAITING_PROCESSES:
        raise Incorrect(f"{line.name}: -c {size} on the prefork pool forks {size} processes, a whole Python "
                        f"interpreter each (about 55 MiB here), to {what}: pick a pool whose -c counts threads or "
                        "greenlets of one process",
                        fix="see the lesson's table: what -c means on each pool")


def fetch_jobs(fleet, task, n: int, seconds: float, extra=(), wait: float = 6.0):
    """Send n fetches (and `extra` (task, args) calls first), wait up to `wait` s for them, and return the Jobs.
    One round takes about `seconds`; a wait of 6 s lets a few rounds end, enough to say how many ran at once."""
    calls = list(extra) + [(task, (f"https://api.example/item/{i}", seconds)) for i in range(n)]
    sent = [(t, args, fleet.send(t, args)) for t, args in calls]
    return fleet.jobs(sent, wait=budget(wait))


def values(jobs) -> list[dict]:
    return [j.end.value for j in jobs if j.end.state == "SUCCESS" and isinstance(j.end.value, dict)
            and {"pid", "lane", "started", "ended"} <= set(j.end.value)]


# -- 1. io -----------------------------------------------------------------------------------------------------------
class WaitingBurst(Exercise):
    """Forty-odd fetches of about half a second each: every one must be in flight at the same time, and the whole
    burst done within one fetch plus ROUND_SLACK_S, on one worker that is not a process per fetch."""

    id = "09.io"
    module = "ex09_io"
    functions = ("WORKERS",)
    fleet = True

    def run(self, s, observed):
        line = one_line(s, '{"fetcher": "celery -A workspace.ex09_io worker -P threads -c 50"}')
        too_many_processes(line, s.app, "run tasks that only wait")
        fetch = task_named(s.mod, "fetch")
        fleet = s.start_fleet([line])
        observed += fleet.describe()
        rng = random.SystemRandom()
        n, seconds = rng.randint(36, 44), round(rng.uniform(0.4, 0.6), 2)
        jobs = fetch_jobs(fleet, fetch, n, seconds)
        got = values(jobs)
        took = (max(v["ended"] for v in got) - fleet.first_sent) if got else None
        observed.append(f"{n} fetches of {seconds} s; {len(got)} succeeded; at most {at_once(got) if got else 0} at "
                        f"once; processes {len({v['pid'] for v in got})}"
                        + (f"; first send to last end {took:.2f} s" if took is not None else ""))
        return {"jobs": jobs, "got": got, "n": n, "seconds": seconds, "took": took, "fleet": fleet, "line": line,
                "app": s.app}

    def judge(self, seen, observed):
        jobs, got, n, seconds, line, app = (seen[k] for k in ("jobs", "got", "n", "seconds", "line", "app"))
        pool = pool_of(seen["fleet"].stats.get(line.name, {}))
        note = unpatched_note(line, app)
        if len(got) < n and note:
            raise AssertionError(f"{n - len(got)} of {n} fetches never ended on {line.name} ({pool}){note}")
        failed = [job for job in jobs if job.end.state not in ("SUCCESS", "NO RESULT")]
        assert not failed, f"{failed[0].describe()}; every fetch must succeed"
        most = at_once(got)
        rounds = -(-n // max(most, 1))
        if most < n:
            took = (f"{seen['took']:.2f} s in all" if len(got) == n else
                    f"after {max(j.end.waited or 0 for j in jobs):g} s only {len(got)} had ended")
            raise AssertionError(
                f"at most {most} of the {n} fetches were in flight at once on {line.name} ({pool}), so the burst takes "
                f"{rounds} rounds of {seconds} s ({took}){note}. Fetches only wait: let the worker hold all {n} at "
                "once (and some room: the check draws the number)")
        for job in jobs:
            assert job.end.state == "SUCCESS", f"{job.describe()}; every fetch must succeed"
        bound = seconds + ROUND_SLACK_S
        assert seen["took"] <= bound, (f"the {n} fetches ran at once, but the last ended {seen['took']:.2f} s after "
                                       f"the first was sent: more than one fetch ({seconds} s) plus {ROUND_SLACK_S} s")


# -- 2. cpu ----------------------------------------------------------------------------------------------------------
class ComputingBurst(Exercise):
    """A batch of pure-Python crunches: at least two must run at the same moment in two different processes (the
    only way past the GIL), on a worker of at most a few processes."""

    id = "09.cpu"
    module = "ex09_cpu"
    functions = ("WORKERS",)
    fleet = True

    def run(self, s, observed):
        line = one_line(s, '{"cruncher": "celery -A workspace.ex09_cpu worker -c 2"}')
        crunch = task_named(s.mod, "crunch")
        fleet = s.start_fleet([line])
        observed += fleet.describe()
        rng = random.SystemRandom()
        n, units = rng.randint(4, 6), rng.randint(3, 5)
        sent = [(crunch, (units,), fleet.send(crunch, (units,))) for _ in range(n)]
        jobs = fleet.jobs(sent, wait=12)
        got = values(jobs)
        pairs = sum(1 for i, a in enumerate(got) for b in got[i + 1:]
                    if a["pid"] != b["pid"] and a["started"] < b["ended"] and b["started"] < a["ended"])
        cpu = sum(v.get("cpu", 0.0) for v in got)
        span = (max(v["ended"] for v in got) - min(v["started"] for v in got)) if got else 0
        observed.append(f"{n} crunches of {units} units; processes {len({v['pid'] for v in got})}; lanes "
                        f"{len({(v['pid'], v['lane']) for v in got})}; at most {at_once(got) if got else 0} at once; "
                        f"pairs in two processes at once: {pairs}; CPU {cpu:.2f} s over {span:.2f} s")
        return {"jobs": jobs, "got": got, "pairs": pairs, "cpu": cpu, "span": span, "fleet": fleet, "line": line,
                "app": s.app}

    def judge(self, seen, observed):
        jobs, got, line, app = seen["jobs"], seen["got"], seen["line"], seen["app"]
        pool = pool_of(seen["fleet"].stats.get(line.name, {}))
        note = unpatched_note(line, app)
        for job in jobs:
            assert job.end.state == "SUCCESS", f"{job.describe()}; every crunch must succeed{note}"
        if seen["pairs"]:
            return
        kind = effective_pool(line, app)
        most = at_once(got)
        cores = f"{seen['cpu']:.2f} s of CPU over {seen['span']:.2f} s"
        if kind == "threads" or (most > 1 and len({v["pid"] for v in got}) == 1):
            why = (f"{most} crunches ran at once, but in threads of one process (pid {got[0]['pid']}), and the GIL lets "
                   f"one thread at a time run Python: {cores}, one core at most")
        elif kind in ("gevent", "eventlet"):
            why = (f"the crunches ran one after another in greenlets of one process: a greenlet that computes never "
                   f"yields, so the others wait ({cores})")
        elif kind == "solo":
            why = f"solo runs one task at a time in the worker's own process ({cores})"
        else:
            why = (f"no two crunches ran at the same moment: the {pool} had one process free for them ({cores})")
        raise AssertionError(f"on {line.name} ({pool}) {why}. CPU-bound work needs processes running side by side, "
                             "one per core")


# -- 3. limit --------------------------------------------------------------------------------------------------------
class HungFetch(Exercise):
    """A burst of normal fetches plus one that hangs for a long time: the hung one must end in FAILURE within
    LIMIT_BOUND_S of its start (a time limit that fires), and the normal ones must all be in flight at once."""

    id = "09.limit"
    module = "ex09_limit"
    functions = ("WORKERS", "fetch")  # fetch's decorator is part of the answer
    fleet = True

    def run(self, s, observed):
        line = one_line(s, '{"fetcher": "celery -A workspace.ex09_limit worker -P gevent -c 50"}')
        too_many_processes(line, s.app, "run tasks that only wait")
        fetch = task_named(s.mod, "fetch")
        fleet = s.start_fleet([line])
        observed += fleet.describe()
        rng = random.SystemRandom()
        n, seconds, hang = rng.randint(24, 30), round(rng.uniform(0.3, 0.5), 2), rng.randint(8, 12)
        # 5 s: the burst takes one round, the hung fetch must end by 2.5 s; one still running then was not stopped
        hung_call = (fetch, ("https://api.example/hangs", hang))
        jobs = fetch_jobs(fleet, fetch, n, seconds, extra=[hung_call], wait=5.0)
        hung, normal = jobs[0], jobs[1:]
        observed.append(f"the hung fetch ({hang} s): {hung.describe()}")
        got = values(normal)
        observed.append(f"{n} normal fetches of {seconds} s: {len(got)} succeeded, at most "
                        f"{at_once(got) if got else 0} at once")
        return {"hung": hung, "normal": normal, "got": got, "n": n, "seconds": seconds, "hang": hang, "fleet": fleet,
                "line": line, "app": s.app, "task": fetch}

    def judge(self, seen, observed):
        hung, line, app, task = seen["hung"], seen["line"], seen["app"], seen["task"]
        pool = pool_of(seen["fleet"].stats.get(line.name, {}))
        kind = effective_pool(line, app)
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        note = unpatched_note(line, app)
        assert hard or soft, "fetch has no time limit at all: give it one"
        if hung.end.state in ("SUCCESS", "NO RESULT"):
            ran = "ran to its end" if hung.end.state == "SUCCESS" else f"was still running after {hung.end.waited:g} s"
            if kind in ("threads", "solo", "eventlet"):
                why = f"the {kind} pool ignores time limits (soft and hard), without a warning"
            elif kind == "gevent" and not hard:
                why = (f"gevent ignores soft_time_limit (here {soft}); it enforces only the hard time_limit, at the "
                       "task's next yield")
            elif hard and hard > seen["hang"]:
                why = f"time_limit={hard} is longer than the hang"
            else:
                why = "nothing stopped it" + note
            raise AssertionError(f"the hung fetch ({seen['hang']} s) {ran} on {line.name} ({pool}): {why}")
        assert hung.end.state == "FAILURE", f"the hung fetch: {hung.end.describe()}"
        if hung.started is not None and hung.ended is not None:
            took = hung.ended - hung.started
            limit = min(x for x in (hard, soft) if x)
            assert took <= LIMIT_BOUND_S + EVENT_SLACK_S, (
                f"the hung fetch was stopped only {took:.1f} s after it started ({pool}, limit {limit} s): stop it "
                f"within {LIMIT_BOUND_S:g} s")
        for job in seen["normal"]:
            assert job.end.state == "SUCCESS", f"{job.describe()}; every normal fetch must succeed"
        most, n = at_once(seen["got"]), seen["n"]
        if most < n:
            raise AssertionError(f"the hung fetch was stopped, but at most {most} of the {n} normal fetches were in "
                                 f"flight at once on {line.name} ({pool}): they waited in rounds{note}. Keep the "
                                 "burst in one round, as in exercise 1")


io = WaitingBurst()
cpu = ComputingBurst()
limit = HungFetch()
