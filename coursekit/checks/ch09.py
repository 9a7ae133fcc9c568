"""Chapter 09 exercises: pools, judged from what the learner's worker line (WORKERS) really did.

Each check starts the one worker its WORKERS names (`fleet.py`), sends a burst of a size and a length it draws,
and judges what the WORKER reported (its task events: which process ran each task, from when to when; its log; the
CPU time its processes used), not what the learner's task returns about itself, which the learner writes.
09.io: fetches that wait must all be in flight at once, on one modest process. 09.cpu: crunches must compute in two
processes at the same moment. 09.limit: a fetch that hangs must be stopped by a time limit that fires (the worker
logs it) while a burst of normal fetches still runs in one round.

Fetches last a second or more: a loaded machine (2 cores, 5 test processes) needs up to about 0.6 s to send 40
messages and hand them to a pool, and a burst can be in flight all at once only if its first fetch is still
waiting when its last one starts.
"""
from __future__ import annotations

import os
import random
import re
import time

import psutil

from ..budget import budget
from ..exercise import Exercise
from ..fleet import pool_kind, pool_of
from ..labs.pools import arithmetic
from ..outcomes import Incorrect, Uncheckable
from ..poolplots import at_once
from ..trials import task_named
from ..workerlines import parse_workers

LIMIT_LOG = re.compile(r"(Soft|Hard) time limit \(([\d.]+)s\) exceeded for \S+\[([\w-]+)\]")
"""What the worker logs when a time limit fires (celery/worker/request.py, Request.on_timeout): which, its
seconds, and the task id."""
MAX_WAITING_PROCESSES = 8
"""A prefork pool bigger than this for tasks that only wait is judged before it starts: a process each."""
ROUND_SLACK_S = 1.5
"""One round of fetches may take this much longer than one fetch (sending, starting, a loaded machine)."""
LIMIT_BOUND_S = 2.0
"""A hung fetch must end within this long of its start."""
EVENT_SLACK_S = 0.5
WAITED_SHARE = 0.5
"""A fetch's run (task-started to task-succeeded, as the worker reported it) must last this share of its seconds:
a fetch that returns early did not wait on anything. Half, not all: prefork reports the start when its main process
reads the child's acknowledgement, which a loaded machine delays."""
WORK_SHARE = 0.4
"""Each of two processes must have used this share of one crunch's CPU time (measured here, on this machine)."""


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
        how = f"{next(o for o in line.options if o.startswith('-Pg'))!r} (no space)"
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
                        f"interpreter each (about 45 MiB here), to {what}: pick a pool whose -c counts threads or "
                        "greenlets of one process",
                        fix="see the lesson's table: what -c means on each pool")


def more_processes_than_cores(line, app) -> None:
    """Judge, before anything starts, a prefork pool of more children than this machine has cores: they take turns
    on the cores, each crunch slower, nothing done sooner."""
    size = line.concurrency or app.conf.worker_concurrency
    cores = os.cpu_count() or 1
    if effective_pool(line, app) == "prefork" and isinstance(size, int) and size > cores:
        raise Incorrect(f"{line.name}: -c {size} forks {size} processes on a machine with {cores} cores: the "
                        "crunches take turns on the cores, each one slower, none done sooner, and every child "
                        "costs memory",
                        fix=f"one process per core: -c {cores} (or -c auto: the cores this worker may use)")


def cpu_times(fleet) -> dict[int, float]:
    """CPU seconds (user + system) each process of the fleet's worker has used so far: the main one and its pool
    children, read from the OS."""
    out = {}
    for worker in fleet.workers:
        try:
            main = psutil.Process(worker.proc.pid)
            procs = [main, *main.children(recursive=True)]
        except (psutil.Error, AttributeError):
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
                out[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
    return out


def fetch_jobs(fleet, task, n: int, seconds: float, extra=(), wait: float = 6.0):
    """Send n fetches (and `extra` (task, args) calls first), wait up to `wait` s for them, and return the Jobs.
    One round takes about `seconds`; a wait of 6 s lets a few rounds end, enough to say how many ran at once."""
    calls = list(extra) + [(task, (f"https://api.example/item/{i}", seconds)) for i in range(n)]
    sent = [(t, args, fleet.send(t, args)) for t, args in calls]
    return fleet.jobs(sent, wait=budget(wait))


def runs(jobs, until: float) -> list[dict]:
    """Each job's first run as the worker's events report it: its process, start and end (a run still going ends at
    `until`), in seconds since the fleet's first message. The task's own return value is the learner's to write."""
    return [{"pid": r.pid, "started": r.started, "ended": r.ended if r.ended is not None else until,
             "done": r.ended is not None, "job": j} for j in jobs for r in j.runs[:1]]


def short_runs(ran: list[dict], seconds: float) -> list[dict]:
    """Fetches that ended well before the `seconds` they were asked to wait."""
    return [r for r in ran if r["done"] and r["job"].end.state == "SUCCESS"
            and r["ended"] - r["started"] < WAITED_SHARE * seconds]


def no_short_cut(ran: list[dict], seconds: float) -> None:
    short = short_runs(ran, seconds)
    if short:
        r = short[0]
        raise AssertionError(f"{len(short)} fetch(es) ended well before their time: {r['job'].call} ran "
                             f"{r['ended'] - r['started']:.2f} s by the worker's events, but a fetch waits "
                             f"{seconds} s. "
                             "The exercise is the worker line: let fetch wait as written (`time.sleep(seconds)`)")


def slow_delivery(ran: list[dict], stats: dict, n: int) -> bool:
    """True when the worker's pool could run all n at once and every run that started after the first one ended was
    received only then: the broker or a busy machine was slow to hand the messages over, and a pool that was full
    is not what held them back (a full pool takes a message in and then keeps it waiting to start)."""
    size = stats.get("pool", {}).get("max-concurrency")
    done = [r["ended"] for r in ran if r["done"]]
    if not isinstance(size, int) or size < n or not done:
        return False
    late = [r for r in ran if r["started"] >= min(done)]
    return bool(late) and all(r["job"].received is not None and r["job"].received >= min(done) - 0.05 for r in late)


def now_since(fleet) -> float:
    return time.time() - (fleet.first_sent or time.time())


def _fetcher(s, observed: list, module: str, example: str):
    """The learner's one worker line for `fetch` (the example shows its form), refused before it starts if it forks
    a process per waiting task; the fleet started from it, the task, and the line."""
    line = one_line(s, f'{{"fetcher": "celery -A workspace.{module} worker {example}"}}')
    too_many_processes(line, s.app, "run tasks that only wait")
    fetch = task_named(s.mod, "fetch")
    fleet = s.start_fleet([line])
    observed += fleet.describe()
    return fleet, fetch, line


# -- 1. io -----------------------------------------------------------------------------------------------------------
class WaitingBurst(Exercise):
    """Forty-odd fetches of about half a second each: every one must be in flight at the same time, and the whole
    burst done within one fetch plus ROUND_SLACK_S, on one worker that is not a process per fetch."""

    id = "09.io"
    module = "ex09_io"
    functions = ("WORKERS",)
    fleet = True

    def run(self, s, observed):
        fleet, fetch, line = _fetcher(s, observed, "ex09_io", "-P threads -c 50")
        rng = random.SystemRandom()
        n, seconds = rng.randint(36, 44), round(rng.uniform(1.2, 1.5), 2)
        jobs = fetch_jobs(fleet, fetch, n, seconds, wait=3 * seconds + 1)
        ran = runs(jobs, now_since(fleet))
        done = [r for r in ran if r["done"] and r["job"].end.state == "SUCCESS"]
        took = max(r["ended"] for r in done) if len(done) == n else None
        observed.append(f"{n} fetches of {seconds} s; {len(done)} succeeded; at most {at_once(ran) if ran else 0} at "
                        f"once; processes {len({r['pid'] for r in ran})}"
                        + (f"; first send to last end {took:.2f} s" if took is not None else ""))
        return {"jobs": jobs, "got": done, "ran": ran, "n": n, "seconds": seconds, "took": took, "fleet": fleet,
                "line": line, "app": s.app}

    def judge(self, seen, observed):
        jobs, got, n, seconds, line, app = (seen[k] for k in ("jobs", "got", "n", "seconds", "line", "app"))
        pool = pool_of(seen["fleet"].stats.get(line.name, {}))
        note = unpatched_note(line, app)
        if len(got) < n and note:
            raise AssertionError(f"{n - len(got)} of {n} fetches never ended on {line.name} ({pool}){note}")
        failed = [job for job in jobs if job.end.state not in ("SUCCESS", "NO RESULT")]
        assert not failed, f"{failed[0].describe()}; every fetch must succeed"
        no_short_cut(seen["ran"], seconds)
        most = at_once(seen["ran"]) if seen["ran"] else 0
        rounds = -(-n // max(most, 1))
        if most < n and not note and slow_delivery(seen["ran"], seen["fleet"].stats.get(line.name, {}), n):
            raise Uncheckable(f"at most {most} of the {n} fetches were in flight at once on {line.name} ({pool}), "
                              f"but it had room for all {n}: the ones that started late reached the worker late, "
                              f"after the first fetch had ended", fix="the machine was busy: run the check again")
        if most < n:
            took = (f"{seen['took']:.2f} s in all" if seen["took"] is not None else
                    f"after {max(j.end.waited or 0 for j in jobs):g} s only {len(got)} had ended")
            raise AssertionError(
                f"at most {most} of the {n} fetches were in flight at once on {line.name} ({pool}), so the burst takes "
                f"{rounds} rounds of {seconds} s ({took}){note}. Fetches only wait: let the worker hold all {n} at "
                "once (and some room: the check draws the number)")
        for job in jobs:
            assert job.end.state == "SUCCESS", f"{job.describe()}; every fetch must succeed"
        bound = seconds + ROUND_SLACK_S
        if seen["took"] is not None and seen["took"] > bound and all(r["ended"] - r["started"] <= bound for r in got):
            # all at once and each no longer than a fetch: the worker was slow to start them, not the pool at fault
            raise Uncheckable(f"the {n} fetches ran at once, but the last ended {seen['took']:.2f} s after the first "
                              f"was sent, more than one fetch ({seconds} s) plus {ROUND_SLACK_S} s: the worker took "
                              f"{max(r['started'] for r in got):.2f} s to start them all",
                              fix="the machine was busy: run the check again")
        if seen["took"] is not None:
            assert seen["took"] <= bound, (f"the {n} fetches ran at once, but the last ended {seen['took']:.2f} s "
                                           f"after the first was sent: more than one fetch ({seconds} s) plus "
                                           f"{ROUND_SLACK_S} s")


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
        more_processes_than_cores(line, s.app)
        crunch = task_named(s.mod, "crunch")
        fleet = s.start_fleet([line])
        observed += fleet.describe()
        rng = random.SystemRandom()
        n, units = rng.randint(4, 6), rng.randint(3, 5)
        begun = time.thread_time()
        arithmetic(1)
        unit_cpu = time.thread_time() - begun  # one unit of crunch's work, on this machine, as CPU time
        before = cpu_times(fleet)
        sent = [(crunch, (units,), fleet.send(crunch, (units,))) for _ in range(n)]
        jobs = fleet.jobs(sent, wait=budget(12))
        ran = runs(jobs, now_since(fleet))
        after = cpu_times(fleet)
        used = {pid: round(after[pid] - before.get(pid, 0.0), 2) for pid in after}
        pairs = sum(1 for i, a in enumerate(ran) for b in ran[i + 1:]
                    if a["pid"] != b["pid"] and a["started"] < b["ended"] and b["started"] < a["ended"])
        cpu = sum(used.values())
        span = (max(r["ended"] for r in ran) - min(r["started"] for r in ran)) if ran else 0
        observed.append(f"{n} crunches of {units} units; processes {len({r['pid'] for r in ran})}; at most "
                        f"{at_once(ran) if ran else 0} at once; pairs in two processes at once: {pairs}; the "
                        f"worker's processes used {cpu:.2f} s of CPU over {span:.2f} s "
                        f"({', '.join(f'{v:g} s' for v in used.values())})")
        return {"jobs": jobs, "ran": ran, "pairs": pairs, "cpu": cpu, "span": span, "fleet": fleet, "line": line,
                "app": s.app, "used": used, "crunch_cpu": units * unit_cpu}

    def judge(self, seen, observed):
        jobs, got, line, app = seen["jobs"], seen["ran"], seen["line"], seen["app"]
        pool = pool_of(seen["fleet"].stats.get(line.name, {}))
        note = unpatched_note(line, app)
        for job in jobs:  # still running at the end of the wait is no fault: a loaded machine computes slowly
            assert job.end.state in ("SUCCESS", "NO RESULT"), f"{job.describe()}; every crunch must succeed{note}"
        assert got, f"no crunch started on {line.name} ({pool}) within the check's wait{note}"
        if seen["pairs"]:
            worked = sorted(seen["used"].values(), reverse=True)
            need = WORK_SHARE * seen["crunch_cpu"]
            assert len(worked) >= 2 and worked[1] >= need, (
                f"two crunches overlapped in two processes, but the worker's processes used only "
                f"{', '.join(f'{v:g} s' for v in worked)} of CPU, where one crunch computes for about "
                f"{seen['crunch_cpu']:.2f} s here: crunch must do its arithmetic, in two processes at once. The "
                "exercise is the worker line, not the task")
            return
        kind = effective_pool(line, app)
        most = at_once(got)
        cores = f"{seen['cpu']:.2f} s of CPU over {seen['span']:.2f} s"
        if kind in ("gevent", "eventlet"):
            why = (f"the crunches took turns in greenlets of one process: a greenlet that computes never yields, so "
                   f"the others wait until it ends ({cores})")
        elif kind == "threads" or (most > 1 and len({v["pid"] for v in got}) == 1):
            why = (f"{most} crunches ran at once, but in threads of one process (pid {got[0]['pid']}), and the GIL "
                   f"lets one thread at a time run Python: {cores}, one core at most")
        elif kind == "solo":
            why = f"solo runs one task at a time in the worker's own process ({cores})"
        else:
            why = (f"no two crunches ran at the same moment: the {pool} had one process free for them ({cores})")
        raise AssertionError(f"on {line.name} ({pool}) {why}. CPU-bound work needs processes running side by side, "
                             "one per core")


# -- 3. limit --------------------------------------------------------------------------------------------------------
class HungFetch(Exercise):
    """A burst of normal fetches plus one that hangs for a long time: the hung one must end in FAILURE within
    LIMIT_BOUND_S of its start, stopped by a time limit that fired (the worker logs 'time limit (Xs) exceeded' for
    it, no earlier than X), and the normal ones must all be in flight at once, each waiting its time."""

    id = "09.limit"
    module = "ex09_limit"
    functions = ("WORKERS", "fetch")  # fetch's decorator is part of the answer
    fleet = True

    def run(self, s, observed):
        fleet, fetch, line = _fetcher(s, observed, "ex09_limit", "-P gevent -c 50")
        rng = random.SystemRandom()
        # fewer and shorter than exercise 1's: a limit of 1 s must let a normal fetch end, and the burst must still
        # reach the worker before its first fetch ends (about 0.3 s for 20 messages on a loaded machine)
        n, seconds, hang = rng.randint(16, 20), round(rng.uniform(0.5, 0.7), 2), rng.randint(8, 12)
        # 4 s: the burst takes one round, the hung fetch must end by 2.5 s; one still running then was not stopped
        hung_call = (fetch, ("https://api.example/hangs", hang))
        jobs = fetch_jobs(fleet, fetch, n, seconds, extra=[hung_call], wait=4.0)
        hung, normal = jobs[0], jobs[1:]
        observed.append(f"the hung fetch ({hang} s): {hung.describe()}")
        ran = runs(normal, now_since(fleet))
        got = [r for r in ran if r["done"] and r["job"].end.state == "SUCCESS"]
        fired = LIMIT_LOG.findall(fleet.workers[0].logs()) if fleet.workers else []
        fired = [(kind, float(limit)) for kind, limit, task_id in fired if task_id == hung.id]
        observed.append(f"{n} normal fetches of {seconds} s: {len(got)} succeeded, at most "
                        f"{at_once(ran) if ran else 0} at once; the worker logged for the hung one: "
                        + (", ".join(f"{k} time limit ({x:g}s) exceeded" for k, x in fired) or "no time limit"))
        return {"hung": hung, "normal": normal, "ran": ran, "got": got, "n": n, "seconds": seconds, "hang": hang,
                "fleet": fleet, "line": line, "app": s.app, "task": fetch, "fired": fired}

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
            elif hard and hard > LIMIT_BOUND_S:
                why = f"time_limit={hard} lets it run {hard} s, and it must be stopped within {LIMIT_BOUND_S:g} s"
            else:
                why = "nothing stopped it" + note
            raise AssertionError(f"the hung fetch ({seen['hang']} s) {ran} on {line.name} ({pool}): {why}")
        assert hung.end.state == "FAILURE", f"the hung fetch: {hung.end.describe()}"
        took = hung.ended - hung.started if hung.started is not None and hung.ended is not None else None
        if not seen["fired"]:
            raise AssertionError(
                f"the hung fetch failed ({hung.end.describe()}), but no time limit fired: the worker logged no "
                f"'time limit exceeded' for it{f' ({kind} pool)' if kind in ('threads', 'solo') else ''}. Your "
                "task's own code raised; the exercise is a limit the pool enforces, on a fetch left as written")
        limit = min(x for _, x in seen["fired"])
        if took is not None:
            assert took <= LIMIT_BOUND_S + EVENT_SLACK_S, (
                f"the hung fetch was stopped only {took:.1f} s after it started ({pool}, limit {limit:g} s): stop it "
                f"within {LIMIT_BOUND_S:g} s")
            assert took >= limit - EVENT_SLACK_S, (
                f"the hung fetch was stopped {took:.1f} s after it started, before its time limit ({limit:g} s) could "
                "fire: something in the task raised the pool's timeout itself. Let the limit you set stop it")
        most, n = at_once(seen["ran"]), seen["n"]
        if most < n:  # said first: a burst in rounds also leaves its last fetches without a result at the check's end
            raise AssertionError(f"the hung fetch was stopped, but at most {most} of the {n} normal fetches were in "
                                 f"flight at once on {line.name} ({pool}): they waited in rounds{note}. Keep the "
                                 "burst in one round, as in exercise 1")
        for job in seen["normal"]:
            assert job.end.state == "SUCCESS", f"{job.describe()}; every normal fetch must succeed"
        no_short_cut(seen["ran"], seen["seconds"])


io = WaitingBurst()
cpu = ComputingBurst()
limit = HungFetch()
