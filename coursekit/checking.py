"""One check's experiment set-up: the learner's module loaded, a worker, a clean queue, a recording.

`Session` does, in order, each step bounded by the check's 30 s:
1. boot the check's worker and, side by side, import the learner's module in a subprocess (`learner.Preflight`);
   the worker reads only a private idle queue for now, so nothing the import sends reaches it;
2. judge that import: a module that hangs or raises gets its verdict here, naming the line;
3. import the module here, bounded in a thread, and build the exercise's tasks (a lazily built task that fails
   does so now, with its line);
4. start recording, wait for the worker, and clear the slate: the exercise's queue purged, and what the exercise's
   earlier checks left (unacked messages, results), listed in the state folder, deleted;
5. the check calls `consume()` when its experiment wants the worker to read the queue.
An exercise with `fleet = True` (chapter 03) boots no worker in step 1: its check starts several named workers on
the learner's module in `run`, with `start_fleet()` (see `fleet.py`).
On the way out every worker is SIGKILLed, the preflight too, and the lab's tasks are restored.
"""
from __future__ import annotations

import difflib
import time
from pathlib import Path

from celery import Celery, states

from . import broker, learner, namespace, probe, queues, rabbit, state
from .errors import CourseError, WorkerError
from .evidence import Publishes, ending, restore_lab_tasks
from .calls import send
from .budget import budget, out_of_time
from .exercise import named
from .outcomes import Incorrect, NotAttempted, Uncheckable
from .trials import Trial
from .worker import Worker

IDLE_QUEUE = "coursekit.check.idle"
"""What a check's worker reads until the check calls `consume()`: no message is ever sent there."""
POLL_S = 0.05
"""The check worker's BRPOP timeout (kombu's default is 1 s): a queue added by `consume()` is read within it."""
READY_WAIT_S = 20.0
"""How long, at most, a check waits for its worker to answer a ping once spawned."""
HOST = "coursekit.checks.host"
FILE_ENV, NAME_ENV = "COURSEKIT_CHECK_FILE", "COURSEKIT_CHECK_MODULE"
SLOW_REDIS_ENV = "COURSEKIT_CHECK_SLOW_REDIS_S"
STATE_REPORT_ENV = "COURSEKIT_CHECK_STATE_REPORT"
HOSTNAME_ENV = "COURSEKIT_CHECK_HOSTNAME"
"""A host name: a check's worker answers it to socket.gethostname(), platform.node() and os.uname(), as a worker on
another machine would."""
"""A file: a check's worker appends to it, at each start, the state file (--statedb) it resolved, as JSON."""
"""Set on a check's worker (`Exercise.slow_redis_s`): each Redis command of a task body waits that long first."""


def app_in(mod) -> Celery | None:
    """The Celery app a module defines or imports: `app`, `celery`, or the only one there is."""
    for attr in ("app", "celery"):
        if isinstance(getattr(mod, attr, None), Celery):
            return getattr(mod, attr)
    found = {id(v): v for v in vars(mod).values() if isinstance(v, Celery)}
    return next(iter(found.values())) if len(found) == 1 else None


_control_apps: dict[tuple[str, str], Celery] = {}


def control_app(url: str | None = None) -> Celery:
    """A course app for pinging and steering check workers before the learner's app is known, on the broker at
    `url` (default: the course's Redis)."""
    from .app import make_app

    key = (url or broker.current().url, namespace.prefix())
    if key not in _control_apps:
        _control_apps[key] = make_app("coursekit-check", broker_url=url, results=False)
    return _control_apps[key]


def rabbitmq_url() -> str:
    """The RabbitMQ an exercise on it uses; Uncheckable, with how to start one, when none answers."""
    url, why = rabbit.find()
    if url is None:
        raise Uncheckable(f"this exercise runs on RabbitMQ: {why}; nothing was judged",
                          fix="start one (`rabbitmq-server -detached`, or `docker compose -f docker/compose.yml up "
                              "-d rabbitmq`), or set COURSEKIT_RABBITMQ_URL; then check again")
    return url


def idle_queue(url: str) -> str:
    """IDLE_QUEUE as named on the broker at `url`: RabbitMQ has no key prefix, so the name carries the namespace."""
    return namespace.prefix() + IDLE_QUEUE if rabbit.is_amqp(url) else IDLE_QUEUE


class CheckWorker(Worker):
    """The worker of one check: the lab module, or (`hosting`) the learner's module loaded by
    `coursekit.checks.host` the way the check loads it. It reads only IDLE_QUEUE until `consume()`."""

    def __init__(self, lab: str | None, hosting: tuple[Path, str] | None, cwd: Path, exercise_id: str,
                 broker_url: str | None = None, concurrency: int = 1, slow_redis_s: float = 0.0):
        self.broker_url = broker_url or broker.current().url
        super().__init__(lab or HOST, name="check", queues=[idle_queue(self.broker_url)], cwd=cwd,
                         concurrency=concurrency, env={SLOW_REDIS_ENV: str(slow_redis_s)} if slow_redis_s else None,
                         started_by=f"the check of exercise {exercise_id}",
                         config={"broker_transport_options": {"polling_interval": POLL_S}})
        self.hosting = hosting
        if hosting:
            self.app = control_app(self.broker_url)  # the learner's module is imported in the worker only

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.hosting:
            env[FILE_ENV], env[NAME_ENV] = str(self.hosting[0]), self.hosting[1]
        if rabbit.is_amqp(self.broker_url):  # results stay on Redis (the control app it serves keeps none)
            env["COURSEKIT_BROKER_URL"] = broker.current().url
        return env

    def consume(self, queue: str) -> None:
        replies = self.app.control.add_consumer(queue, destination=[self.nodename], reply=True,
                                                timeout=budget(3)) or []
        if not any("ok" in reply.get(self.nodename, {}) for reply in replies):
            raise Uncheckable(f"the check's worker did not start reading queue {queue!r} (reply: {replies})",
                              fix="check again; if it persists, run `coursekit doctor`")
        if rabbit.is_amqp(self.broker_url) and not rabbit.wait_for_consumer(self.broker_url, queue, budget(5)):
            raise Uncheckable(f"the check's worker did not start reading queue {queue!r} within 5 s",
                              fix="check again; if it persists, run `coursekit doctor`")


def _tracked(exercise_id: str) -> Path:
    folder = state.state_dir() / "checks"
    folder.mkdir(exist_ok=True)
    return folder / f"{exercise_id}.ids"


def empty_queues(app: Celery) -> int:
    """Empty the exercise's queue and return how many messages it held: purged on Redis; on RabbitMQ deleted with
    the app's other course queues (see rabbit.drop: an earlier answer may have declared them differently)."""
    if rabbit.is_amqp(app):
        return rabbit.drop(str(app.conf.broker_url), rabbit.course_queues(app))
    return queues.purge(app, app.conf.task_default_queue)


def clear_slate(app: Celery, exercise_id: str) -> int:
    """Purge the exercise's queue, and delete what its earlier checks left behind (messages a killed worker held
    unacknowledged, results), whatever happened to them. Returns how many waiting messages were purged."""
    purged = empty_queues(app)
    listing = _tracked(exercise_id)
    ids = set(listing.read_text().split()) if listing.exists() else set()
    if ids and probe.scheme(str(app.conf.broker_url)) in probe.REDIS_SCHEMES:
        queues.drop_held(app, task_ids=ids)  # held by a worker killed mid-check: Redis would restore them later
    for task_id in ids:
        try:
            app.AsyncResult(task_id).forget()
        except NotImplementedError:  # an app without a result backend: nothing stored, nothing to forget
            break
    listing.write_text("")
    return purged


_imported_cleanly: dict[tuple[str, str], learner.Imported] = {}
"""Module texts that already imported cleanly in a preflight: checking three exercises of one module pays the
subprocess once. The import here stays bounded, should such a module behave differently later."""


class Session:
    """`with Session(exercise, source) as s:` gives `s.mod`, `s.app`, `s.worker`, `s.sent` (messages published
    here), `s.recorder`; `s.consume()` lets the worker read the exercise's queue; `s.recording()` stops the
    recorder and returns what it saw."""

    def __init__(self, exercise, source: learner.Source):
        self.exercise, self.source = exercise, source
        self.path = source.path
        self.name = learner.qualified_name(source.path)
        self.worker: CheckWorker | None = None
        self.fleet = None  # several named workers, when the exercise starts them (`start_fleet`)
        self.preflight: learner.Preflight | None = None
        self.recorder = None
        self._recording = None
        self.sent = Publishes(_tracked(exercise.id))
        self.mod = self.app = None

    # -- set-up ------------------------------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        ex = self.exercise
        url = broker.current().url
        tasks_url = rabbitmq_url() if ex.broker == "rabbitmq" else url  # RabbitMQ missing: said before anything runs
        if ex.lab:
            self.app = ex.app_of(None)  # known before the learner's module: purged on the way out, whatever happens
        restore_lab_tasks()  # whatever an earlier import did to them, this check starts from the lab's own tasks
        bound = min(ex.import_timeout, budget(ex.import_timeout + learner.DUMP_GRACE_S) - learner.DUMP_GRACE_S)
        known = _imported_cleanly.get((str(self.path), self.source.text))
        if known is None:
            self.preflight = learner.Preflight(self.path, self.name, bound, env={"COURSEKIT_BROKER_URL": url})
        hosting = None if ex.lab else (self.path, self.name)
        if not ex.fleet:
            self.worker = CheckWorker(ex.lab, hosting, cwd=self.path.parent.parent, exercise_id=ex.id,
                                      broker_url=tasks_url, concurrency=ex.concurrency,
                                      slow_redis_s=ex.slow_redis_s)
            if rabbit.is_amqp(tasks_url):  # declared by an earlier check, maybe with other arguments
                rabbit.drop(tasks_url, [idle_queue(tasks_url)])
            self.worker.spawn()
        if known is None:
            known = self.preflight.result()
            self._judge_import(known)
            _imported_cleanly[(str(self.path), self.source.text)] = known
        self._judge_names(known)
        self.mod = self._load_here(bound)
        self._build_tasks()
        self.app = ex.app_of(self.mod)
        self._judge_broker()
        from .observe import Recorder

        self.recorder = Recorder(self.app).start(timeout=budget(3))
        if self.worker is not None:
            self._wait_for_worker()
        clear_slate(self.app, ex.id)
        self.sent.__enter__()

    def _judge_import(self, seen: learner.Imported) -> None:
        file = self.path.name
        if seen.hung and self.preflight.bound < self.exercise.import_timeout:  # the check's time ran out first
            raise Uncheckable(f"the check ran out of its time while {file} was importing; nothing was judged",
                              fix="check again")
        if seen.hung:
            where = self.source.where(seen.line)
            raise Incorrect(
                f"{file} does not finish importing: {where or 'it'} was still running after "
                f"{self.preflight.bound:.0f} s",
                fix=(f"remove line {seen.line} or move it under `if __name__ == '__main__':`" if seen.line else
                     "remove the code that waits") + ": module code runs every time the module is imported, by "
                "the check and by every worker, and nothing answers a .get() while a module is still importing")
        if seen.ended:
            raise Incorrect(f"importing {file} ended the process that imported it, before the import finished "
                            "(os._exit(), a crash or a signal: no exception was raised)",
                            fix="remove the code that ends the process: module code runs every time the module is "
                                "imported, by the check and by every worker")
        if seen.error:
            text = f"importing {file} raised {seen.error}: {seen.message}"
            if seen.course_error:
                raise Uncheckable(text.replace("coursekit: ", ""))
            raise Incorrect(text + (f", at {self.source.where(seen.line)}" if seen.line else ""),
                            fix="correct that line; the module must import cleanly before anything can run")

    def _judge_broker(self) -> None:
        """The learner's app must use the exercise's broker: the check's worker and recorder are there."""
        uses = "rabbitmq" if rabbit.is_amqp(self.app) else "redis"
        if uses != self.exercise.broker:
            raise Incorrect(f"the app in {self.path.name} sends its tasks to {uses} ({self.app.conf.broker_url}); "
                            f"this exercise runs on {self.exercise.broker}",
                            fix="make_app(name, broker_url=ck.rabbitmq().url)" if self.exercise.broker == "rabbitmq"
                            else "make_app(name), with no broker_url: the course's Redis")

    def _judge_names(self, seen: learner.Imported) -> None:
        file = self.path.name
        missing = [n for n in self.exercise.functions if n not in seen.names]
        if missing:
            raise NotAttempted(f"{file} has no {', '.join(map(named, missing))} yet")

    def _load_here(self, bound: float):
        from celery._state import _get_active_apps

        for app in list(_get_active_apps()):  # the previous version of these tasks: replaced, not duplicated
            for task_name in [n for n in app._tasks if n.startswith(self.name + ".")]:  # _tasks: no finalize
                del app._tasks[task_name]
        try:
            return learner.load(self.path, self.name, budget(bound))
        except TimeoutError:
            raise Uncheckable(f"{self.path.name} imported in a separate process but not in this one within "
                              f"{bound:.0f} s", fix="remove code that waits at import, then check again") from None
        except CourseError as exc:
            raise Uncheckable(exc.problem, fix=exc.fix) from None
        except Exception as exc:
            where = self.source.where(learner.raised_at(exc, self.path))
            raise Incorrect(f"importing {self.path.name} raised {type(exc).__name__}: {exc}"
                            + (f", at {where}" if where else "")) from None

    def _build_tasks(self) -> None:
        """Celery builds a task on first use; build this exercise's now, so an error in its options is named."""
        for name in self.exercise.functions:
            obj = getattr(self.mod, name, None)
            try:
                obj.__class__  # evaluates a lazily built task (a PromiseProxy)
            except Exception as exc:
                where = self.source.where(self.source.definition_line(name))
                raise Incorrect(f"building the task {name} failed with {type(exc).__name__}: {exc}"
                                + (f", at {where}" if where else ""),
                                fix="check the options given to @app.task: each must have the type Celery "
                                    "documents (e.g. autoretry_for takes a tuple of exceptions)") from None

    def _wait_for_worker(self) -> None:
        worker = self.worker
        try:
            worker.wait_until_ready(time.monotonic() - worker._spawned_at + budget(READY_WAIT_S))
        except WorkerError as exc:
            if out_of_time():
                raise Uncheckable(f"the check ran out of its time while its worker started ({exc.problem})",
                                  fix="the machine may be busy: run the check again") from None
            if not worker.hosting:
                raise
            if "did not answer a ping" in exc.problem and "Traceback (most recent call last)" not in worker.logs():
                # alive and silent: its log's last line (often a warning printed at start) would explain nothing
                raise Incorrect(f"the worker on {self.path.name} started but did not answer a ping within "
                                f"{READY_WAIT_S:.0f} s, and was stopped: code of "
                                "your module that runs while the worker starts (a signal receiver, such as "
                                "setup_logging's or worker_init's) waits") from None
            raise Incorrect(f"the worker could not load {self.path.name}: "
                            f"{learner.stopped_by(worker.logs(), self.source) or exc.problem}") from None

    def misspelt_settings(self) -> str:
        """A sentence naming the settings the learner's app was given that Celery does not know (it ignores them
        without a word), each with the setting it most likely meant; "" when there are none."""
        from celery.app.defaults import SETTING_KEYS

        if self.app is None:
            return ""
        try:
            given = [k for k in self.app.conf.changes if k not in SETTING_KEYS and k != "deprecated_settings"]
        except Exception:  # settings Celery cannot even read: the verdict says so already
            return ""
        unknown = []
        for key in given:
            close = difflib.get_close_matches(key, SETTING_KEYS, n=1)
            unknown.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return (f"Your app sets {', '.join(unknown)}: Celery knows no such setting and ignores it without a word."
                if unknown else "")

    # -- during the experiment ---------------------------------------------------------------------------------
    def consume(self) -> None:
        self.worker.consume(self.app.conf.task_default_queue)

    def recording(self, expect=(), settle: float = 3.0):
        """Stop recording (once) and return the Recording. Workers send events in batches, a moment after the
        result is stored: first wait, up to `settle` s, until every task id in `expect` whose result is stored has
        its final event. (A task with no result yet, one that hangs, say, has no final event to wait for; on a busy
        machine the events of one that ended can lag by more than a second.)"""
        if self._recording is None:
            waiting = [i for i in expect if self._has_result(i)]
            if waiting:
                self.recorder.settle(*waiting, timeout=budget(settle))
            time.sleep(0.05)  # events of the same batch that arrive just behind
            self._recording = self.recorder.stop()
        return self._recording

    def _has_result(self, task_id: str) -> bool:
        try:
            return self.app.AsyncResult(task_id).state in states.READY_STATES
        except Exception:  # no result backend, or it cannot answer: then there is nothing to wait for
            return False

    def runs(self, task_ids) -> dict[str, list[dict]]:
        """Each task id's runs, as the recording shows them: `at` (Unix time it started), `node`, `pid`,
        `in_pool` (one of the check worker's pool children, now or earlier), `outcome`."""
        rec = self.recording(expect=task_ids)
        pool = set(self.worker.children)
        memory = rec.memory
        if len(memory):
            pool |= set(memory[(memory.node == self.worker.nodename) & (memory.role == "child")].pid)
        runs = rec.runs
        foreign = sorted({n for n in runs[runs.task_id.isin(list(task_ids))].node if n and n != self.worker.nodename})
        if foreign:
            raise Uncheckable(f"another worker ({', '.join(foreign)}) took the check's tasks from queue "
                              f"{self.app.conf.task_default_queue!r}, so the check cannot tell what its own worker "
                              "did", fix="stop other workers of this course (a lesson's, still running?), then "
                                         "check again")
        out = {}
        for task_id in task_ids:
            rows = runs[runs.task_id == task_id].to_dict("records")
            for row in rows:
                row["in_pool"] = row["node"] == self.worker.nodename and row["pid"] in pool
                row["at"] = rec.started_at + row["started"]
            out[task_id] = rows
        return out

    def run_on_worker(self, task, calls: list[tuple[tuple, float]]) -> list[Trial]:
        """Let the worker read the queue, send `task` once per (args, wait) in `calls`, all at once, and wait up to
        `wait` s from the sending for each to end; then one `trials.Trial` per call, from the recording."""
        self.consume()
        results = [send(task, args, self.source) for args, _ in calls]
        begun = time.monotonic()
        endings = [ending(result, budget(max(0.1, begun + wait - time.monotonic())), sent=begun)
                   for result, (_, wait) in zip(results, calls)]
        runs = self.runs([r.id for r in results])
        short = task.name.rsplit(".", 1)[-1]
        return [Trial(f"{short}{args!r}".replace(",)", ")"), args, end, runs[r.id], self.received(r.id), wait)
                for (args, wait), r, end in zip(calls, results, endings)]

    def received(self, task_id: str) -> int:
        """How many messages of `task_id` the worker received: one per attempt when each retry went through the
        broker."""
        events = self.recording().events_df
        return int(((events.task_id == task_id) & (events.type == "task-received")).sum())

    def taken_at(self, task_id: str) -> float | None:
        """When the worker took the message (received it, or dropped it as expired), as a Unix time."""
        rec = self.recording()
        events = rec.events_df
        hits = events[(events.task_id == task_id) & events.type.isin(["task-received", "task-revoked"])]
        return rec.started_at + float(hits.t.min()) if len(hits) else None

    # -- several workers (chapter 03) --------------------------------------------------------------------------
    def start_fleet(self, lines):
        """Start one worker per `workerlines.WorkerLine` on the learner's module, side by side, and return the
        `fleet.Fleet` once all are ready; they are SIGKILLed and their queues purged when the session closes."""
        from .fleet import Fleet

        self.fleet = Fleet(self, lines)
        return self.fleet.start()

    # -- tear-down ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        for step in (lambda: self.sent.__exit__(None, None, None),
                     lambda: self._recording is None and self.recorder and self.recorder.stop(),
                     lambda: self.worker and self.worker.kill(),
                     lambda: self.fleet and self.fleet.close(),
                     lambda: self.preflight and self.preflight.close(),
                     restore_lab_tasks,
                     lambda: self.app is not None and self._purge(),
                     self._drop_idle_queue):
            try:
                step()
            except Exception:  # tear-down never hides the verdict; the next check clears the slate anyway
                pass

    def _drop_idle_queue(self) -> None:
        """On RabbitMQ the worker's idle queue stays until deleted (on Redis an empty list is no key at all). The
        namespace's three event and control exchanges stay, as Celery leaves them: this process's pooled connections
        remember them as declared and would publish to nothing (rabbit.drop_namespace is for a namespace done with)."""
        if self.worker is not None and rabbit.is_amqp(self.worker.broker_url):
            rabbit.drop(self.worker.broker_url, [idle_queue(self.worker.broker_url)])

    def _purge(self) -> None:
        empty_queues(self.app)
