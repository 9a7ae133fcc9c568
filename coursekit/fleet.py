"""Several named workers on the learner's module, side by side, for one check (chapter 03): which worker ran each
task, when, and how many at once is the answer being judged.

`Session.start_fleet(lines)` builds a `Fleet` from `WorkerLine`s (the learner's WORKERS, or the check's own lines,
as operations would start them), and `start()`:
1. purges every queue the fleet may read or the module's tasks route to, so nothing an earlier check left runs;
2. spawns every worker, then waits for each (they boot side by side), within the check's 30 s;
3. asks them which queues they read and how their pool is set (`inspect().active_queues()`, `stats()`).
`send()` and `jobs()` run the experiment; `close()` SIGKILLs every worker and purges every queue the check used
(those above and any a message went to): those only, so a rerun starts clean and nothing else is touched.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pandas as pd
from celery.concurrency import ALIASES
from celery.result import EagerResult

from . import launch, queues
from .checking import FILE_ENV, HOST, NAME_ENV, control_app
from .errors import WorkerError
from .evidence import Ending, call_repr, ending
from .calls import send
from .budget import budget, out_of_time
from .learner import stopped_by
from .outcomes import Incorrect, Uncheckable
from .observe.frames import max_overlap
from .worker import Worker
from .workerlines import WorkerLine

MAX_POOL = 24
"""Pool processes in one worker: a prefork child costs about 45 MB and a fork."""
MAX_THREADS = 100
"""Threads in one worker's pool: cheap to start (a threads pool starts them as tasks arrive), so not counted in
MAX_FLEET_POOL."""
MAX_GREENLETS = 1000
"""Greenlets in one gevent or eventlet worker: a few KiB each, spawned as tasks arrive (chapter 09)."""
MAX_FLEET_POOL = 32
"""Pool processes of all of one check's workers together: on 2 cores, a few seconds of boot at most."""

UNREAD_WAIT_S = 0.3
"""How long a check waits, once, for the messages sent to a queue no worker of the fleet reads: none will run."""


class FleetWorker(Worker):
    """One worker of a fleet: the learner's module (loaded by `coursekit.checks.host`) with the options of its
    line and no others of the check's: where the line gives no -c or -P, the app's settings decide, as in a
    deployment."""

    def __init__(self, line: WorkerLine, hosting: tuple, cwd, exercise_id: str):
        super().__init__(HOST, name=line.name, queues=list(line.queues or ()), concurrency=None, cwd=cwd,
                         started_by=f"the check of exercise {exercise_id}")
        self.line, self.hosting = line, hosting
        self.app = control_app()  # pings it; the learner's module is imported in the worker only

    def command(self) -> list[str]:
        return launch.command("-A", self.module, "worker", "-E", "-n", self.nodename, "-l", "INFO",
                              "--without-mingle", *self.line.options)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env[FILE_ENV], env[NAME_ENV] = str(self.hosting[0]), self.hosting[1]
        return env


@dataclass
class Run:
    worker: str
    pid: int | None
    started: float
    """Seconds since the fleet's first message."""
    ended: float | None


@dataclass
class Job:
    """One message the check sent the fleet, and what came of it."""

    call: str
    """As the learner would write it: `resize('photo-12.jpg', 0.2)`."""
    task: str
    id: str
    sent: float | None
    """Seconds since the fleet's first message."""
    queue: str | None
    """The queue the message went to (the task-sent event)."""
    end: Ending
    runs: list[Run]
    received: float | None = None
    """When a worker first took the message (its task-received event), in seconds since the fleet's first message."""

    @property
    def worker(self) -> str | None:
        return self.runs[0].worker if self.runs else None

    @property
    def started(self) -> float | None:
        return self.runs[0].started if self.runs else None

    @property
    def ended(self) -> float | None:
        return self.runs[-1].ended if self.runs else None

    def describe(self) -> str:
        """`resize('photo-12.jpg', 0.2): queue 'images', worker images, +0.31 to +0.52 s, returned '...'`"""
        where = f"queue {self.queue!r}"
        if not self.runs:
            return f"{self.call}: {where}, never started"
        span = (f"{self.started:+.2f} to {self.ended:+.2f} s" if self.ended is not None else
                f"from {self.started:+.2f} s, still running")
        return f"{self.call}: {where}, worker {self.worker}, {span}, {self.end.describe()}"


def pool_kind(implementation: object) -> str:
    """'prefork', 'threads', 'solo' from a pool as a worker's stats() name it
    (`celery.concurrency.thread:TaskPool`), or as -P and worker_pool do (`threads`, `processes`)."""
    kind = str(implementation).split(":")[0].rsplit(".", 1)[-1]
    return {"thread": "threads", "processes": "prefork"}.get(kind, kind)


def pool_of(stats: dict) -> str:
    """`prefork pool of 4`, from a worker's stats()."""
    pool = stats.get("pool", {})
    return f"{pool_kind(pool.get('implementation', '?'))} pool of {pool.get('max-concurrency', '?')}"


class Fleet:
    def __init__(self, session, lines: list[WorkerLine]):
        self.session, self.app = session, session.app
        hosting = (session.path, session.name)
        self.workers = [FleetWorker(line, hosting, session.path.parent.parent, session.exercise.id) for line in lines]
        self.used: set[str] = set()
        self.reads: dict[str, list[str]] = {}
        """Worker name -> the queues it consumes, as the worker itself answered."""
        self.stats: dict[str, dict] = {}
        self.first_sent: float | None = None
        self.running_others: dict[str, str] = {}
        """Worker name -> a task the check did not send that the worker was still running at the end (one the
        module sends when imported, say: every worker imports it), as a call: `resize('warm-up.jpg', 100)`."""
        self._names = {w.nodename: w.name for w in self.workers}

    # -- start ---------------------------------------------------------------------------------------------------
    def start(self) -> "Fleet":
        if not self.app.conf.worker_enable_remote_control:
            raise Incorrect("your app sets worker_enable_remote_control=False: its workers would answer no ping and "
                            "no inspect, so neither the check nor `celery inspect` could see them",
                            fix="leave worker_enable_remote_control at its default (True)")
        self._check_pools()
        self.used |= self._queues_before()
        self.purge()
        for worker in self.workers:
            worker.spawn()
        for worker in self.workers:
            self._wait_for(worker)
        self._look()
        return self

    def _check_pools(self) -> None:
        """Refuse, before anything starts, a pool setting no worker could start with, and a fleet that would fork
        more than the machine can boot in the check's time: only the line and the app's settings together say what
        a worker starts (-c, else worker_concurrency; -P, else worker_pool)."""
        conf, total = self.app.conf, 0
        pool = conf.worker_pool
        if isinstance(pool, str) and pool not in ALIASES and not any(c in pool for c in ".:"):
            raise Incorrect(f"worker_pool={pool!r} in your settings is no pool Celery knows, so every worker would "
                            "stop at start", fix=f"use one of {', '.join(a for a in ALIASES if a != 'custom')}")
        for worker in self.workers:
            kind = pool_kind(worker.line.pool or pool)
            size = worker.line.concurrency or conf.worker_concurrency or os.cpu_count() or 1  # -c 0: the setting
            try:
                size = int(size)
            except (TypeError, ValueError):
                continue  # 'auto', or a value the worker itself will refuse at start, naming it
            if kind == "solo":
                size = 1
            threads = kind in ("threads", "gevent", "eventlet")  # threads or greenlets of one process
            limit, unit = ((MAX_GREENLETS, "greenlets") if kind in ("gevent", "eventlet") else
                           (MAX_THREADS, "threads") if threads else (MAX_POOL, "processes"))
            if size > limit:
                source = f"-c {size}" if worker.line.concurrency else f"worker_concurrency={size} in your settings"
                raise Uncheckable(f"worker {worker.name!r} would start {size} pool {unit} ({source}); a check starts "
                                  f"at most {limit} in one worker",
                                  fix=f"ask for {limit} or fewer")
            total += 0 if threads else size
        if total > MAX_FLEET_POOL:
            raise Uncheckable(f"these workers would start {total} pool processes in all; a check starts at most "
                              f"{MAX_FLEET_POOL}", fix="deploy fewer or smaller workers (or a threads pool)")

    def _queues_before(self) -> set[str]:
        """The app's default queue and declared queues, every queue a line names, and where each of the module's
        tasks routes to: whatever the fleet may read or the check may send to."""
        found = {self.app.conf.task_default_queue}
        found |= {getattr(q, "name", str(q)) for q in (self.app.conf.task_queues or ())}
        found |= {q for w in self.workers for q in (w.line.queues or ())}
        prefix = self.session.name + "."
        for name, task in list(self.app.tasks.items()):
            if name.startswith(prefix):
                try:
                    options = {"queue": task.queue} if getattr(task, "queue", None) else {}
                    found.add(self.app.amqp.router.route(options, name, task_type=task)["queue"].name)
                except Exception:  # a route Celery cannot read: sending will say so, naming the learner's line
                    pass
        return found

    def _wait_for(self, worker: FleetWorker) -> None:
        try:
            worker.wait_until_ready(time.monotonic() - worker._spawned_at + budget(20))
        except WorkerError as exc:
            if out_of_time():
                raise Uncheckable(f"the check ran out of its time while worker {worker.name!r} started "
                                  f"({exc.problem})", fix="the machine may be busy: run the check again") from None
            if " ready." in worker.logs():  # it started: only the ping went unanswered
                raise Uncheckable(f"worker {worker.name!r} ({worker.line.text}) logged that it was ready, but did "
                                  f"not answer a ping in time ({exc.problem})",
                                  fix="the machine may be busy: run the check again") from None
            why = stopped_by(worker.logs(), self.session.source) or exc.problem
            raise Incorrect(f"worker {worker.name!r} ({worker.line.text}) could not start: {why}",
                            fix="correct what the log names: a setting of your app, or the worker's line") from None

    def _look(self) -> None:
        nodes = list(self._names)
        inspect = control_app().control.inspect(destination=nodes, limit=len(nodes), timeout=budget(3))
        active, stats = inspect.active_queues() or {}, inspect.stats() or {}
        silent = [self._names[n] for n in nodes if n not in active or n not in stats]
        if silent:
            raise Uncheckable(f"worker(s) {', '.join(silent)} did not say which queues they read",
                              fix="the machine may be busy: run the check again")
        for node, name in self._names.items():
            self.reads[name] = sorted(q["name"] for q in active[node])
            self.stats[name] = stats[node]
        self.used |= {q for read in self.reads.values() for q in read}

    # -- looking at it -------------------------------------------------------------------------------------------
    def readers(self, queue: str | None) -> list[str]:
        """The workers that read `queue`."""
        return [name for name, read in self.reads.items() if queue in read]

    def describe(self) -> list[str]:
        """One line per worker: `images: celery -A ... -> reads ['images'], prefork pool of 1, prefetch_count 4`"""
        out = []
        for worker in self.workers:
            stats = self.stats.get(worker.name, {})
            out.append(f"{worker.line} -> reads {self.reads.get(worker.name)}, {pool_of(stats)}, "
                       f"prefetch_count {stats.get('prefetch_count', '?')}")
        return out

    # -- the experiment --------------------------------------------------------------------------------------------
    def send(self, task, args: tuple):
        if self.first_sent is None:
            self.first_sent = time.time()
        result = send(task, args, self.session.source)
        if isinstance(result, EagerResult):
            raise Incorrect(f"{call_repr(task.name, args)} ran in the checking process itself, not on a worker: "
                            "task_always_eager runs every task where it is called", fix="leave task_always_eager off")
        return result

    def wait_started(self, result, timeout: float) -> bool:
        """Wait until a worker has started `result`'s task (its task-started event), at most `timeout` s."""
        deadline = time.monotonic() + budget(timeout)
        while time.monotonic() < deadline:
            if any(e.get("uuid") == result.id and e["type"] == "task-started"
                   for e in list(self.session.recorder.recording.events)):
                return True
            time.sleep(0.02)
        return False

    def jobs(self, sent: list, wait: float) -> list[Job]:
        """Wait, up to `wait` s from now, for each (task, args, AsyncResult) in `sent` to end (a message whose queue
        no worker reads only a moment), then one Job each, from the recording."""
        deadline = time.monotonic() + wait
        read = {q for names in self.reads.values() for q in names}
        unread = {r.id for _, _, r in sent if any(m.queue not in read for m in self.session.sent.of(r.id))}
        if unread:
            time.sleep(budget(UNREAD_WAIT_S))  # long enough to see one run anyway, should a worker read it after all
        endings = []
        for task, args, result in sent:
            left = deadline - time.monotonic()
            if (result.id in unread or left < 0.2) and not result.ready():  # get() waits in steps of 1 s: ask once
                endings.append(Ending("NO RESULT", waited=round(wait)))
            else:
                endings.append(ending(result, budget(max(0.1, left))))
        ids = [result.id for _, _, result in sent]
        rec = self.session.recording(expect=ids)
        tasks = rec.tasks.set_index("task_id")
        runs = rec.runs[rec.runs.task_id.isin(ids)]
        foreign = sorted({n for n in runs.node if n and n not in self._names})
        self._note_running_others(rec, ids)
        if foreign:
            raise Uncheckable(f"another worker ({', '.join(foreign)}) took the check's tasks, so the check cannot "
                              "tell what its own workers did", fix="stop other workers of this course (a lesson's, "
                                                                   "still running?), then check again")
        shift = rec.started_at - (self.first_sent or rec.started_at)
        out = []
        for (task, args, result), end in zip(sent, endings):
            rows = runs[runs.task_id == result.id].to_dict("records")
            own = [Run(self._names[r["node"]], r["pid"], r["started"] + shift,
                       None if pd.isna(r["ended"]) else r["ended"] + shift) for r in rows]
            message = self.session.sent.of(result.id)
            queue = tasks.loc[result.id, "queue"] if result.id in tasks.index else None
            if queue is None or pd.isna(queue):
                queue = message[0].queue if message else None
            at = message[0].at - self.first_sent if message and self.first_sent else None
            taken = tasks.loc[result.id, "received"] if result.id in tasks.index else None
            taken = None if taken is None or pd.isna(taken) else float(taken) + shift
            out.append(Job(call_repr(task.name, args), task.name.rsplit(".", 1)[-1], result.id, at, queue, end, own,
                           taken))
        self.used |= {job.queue for job in out if job.queue}
        return out

    def _note_running_others(self, rec, ids: list[str]) -> None:
        others = rec.runs[~rec.runs.task_id.isin(ids) & rec.runs.node.isin(list(self._names)) & rec.runs.ended.isna()]
        args = rec.tasks.set_index("task_id")["args"]
        for row in others.to_dict("records"):
            shown = args.get(row["task_id"])
            self.running_others.setdefault(self._names[row["node"]], f"{str(row['name']).rsplit('.', 1)[-1]}"
                                                                     f"{shown if isinstance(shown, str) else '(...)'}")

    # -- tear-down -------------------------------------------------------------------------------------------------
    def purge(self) -> None:
        for queue in sorted(self.used):
            queues.purge(self.app, queue)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.used |= {m.queue for m in self.session.sent if m.queue}
        self.purge()


def most_at_once(jobs: list[Job], until: float) -> int:
    """The most runs of these jobs in progress at one instant (a run still going ends at `until`)."""
    rows = [{"started": r.started, "ended": r.ended} for job in jobs for r in job.runs]
    return max_overlap(pd.DataFrame(rows, columns=["started", "ended"]), until)
