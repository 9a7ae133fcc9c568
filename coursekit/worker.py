"""`Worker`: one real `celery -A <module> worker` subprocess, in its own process group.

Its life reads as verbs: spawn, wait_until_ready, stop (warm shutdown), kill (SIGKILL the whole group),
kill_child (SIGKILL one pool process). It never outlives the process that started it: see `launch.py`.
"""
from __future__ import annotations

import atexit
import importlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil
from celery import Celery
from kombu.exceptions import OperationalError

from . import census, launch, probe, state, streams
from .app import WORKER_CONFIG_ENV
from .defaults import DEFAULTS
from .errors import CourseError, WorkerError
from .owned import OwnedProcess

_counter = itertools.count(1)
_live: "set[Worker]" = set()
_live_lock = threading.Lock()

# Lines a worker logs when it cannot go on, and what the learner should do about each.
_LOG_DIAGNOSES = [
    ("Cannot connect to", "start the broker or correct the app's URL; `coursekit status` shows what runs, "
                          "`ck.up()` starts one"),
    ("Unable to load celery application", "check the module name given to Worker(); the file must be importable "
                                          "from the folder the notebook runs in"),
    ("Error: Invalid value", "one of the worker options is not valid: see the log below"),
    # On a team's broker (coursekit/team.py) each learner's ACL user may touch only its own namespace.
    ("NoPermissionError", "the shared broker refused this worker something outside your namespace: start it "
                          "with the COURSEKIT_LEARNER of your set-up line; if that is so, show the facilitator "
                          "the NOPERM line of the log below"),
]


def short_name(nodename: str) -> str:
    """'a' for the node name 'a-<pid of the process that started it>@host' that a Worker named 'a' gets; any
    other node name up to its '@'."""
    name = nodename.split("@", 1)[0]
    stem, _, pid = name.rpartition("-")
    return stem if stem and pid.isdigit() else name


def answers_ping(app: Celery, nodename: str, timeout: float) -> bool:
    """Whether the worker `nodename` answers a ping within `timeout` s. Each ping gets a connection of its own that
    polls Redis every 50 ms: on the app's pooled connection a ping that went unanswered leaves a BRPOP waiting out
    kombu's 1 s polling interval, so the next pings sat through it too and a worker was seen ready about 0.5 s
    after it was (measured: answered at 1.02 s from its spawn against 0.57 s, for a worker ready at 0.5 s)."""
    with app.connection_for_write(transport_options={"polling_interval": 0.05}) as conn:
        return bool(app.control.ping(destination=[nodename], timeout=timeout, limit=1, connection=conn))


def load_app(spec: str) -> Celery:
    """Import the app named by `spec` here first, so a broken module fails with a clear message before any
    process starts. `spec` is a module (its `app`, `celery` or only Celery app) or, as `celery -A` takes it,
    `module:attribute` for a module that holds several apps."""
    module, _, attribute = spec.partition(":")
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module)
    except CourseError:
        raise
    except SyntaxError as exc:
        raise WorkerError(f"{exc.filename}, line {exc.lineno}: syntax error: {exc.msg}",
                          fix=f"correct the line in {exc.filename}, then start the worker again") from None
    except ModuleNotFoundError as exc:
        raise WorkerError(f"no module named {exc.name!r} (looking for {module!r} from {os.getcwd()})",
                          fix="check the spelling; a module you wrote with %%writefile must sit in the folder "
                              "the notebook runs in, or a package below it") from None
    except Exception as exc:  # the learner's module raised while importing
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise WorkerError(f"importing {module!r} raised {type(exc).__name__}: {exc}",
                          fix=f"see {where.filename}, line {where.lineno}") from None
    if attribute:
        found = getattr(mod, attribute, None)
        if isinstance(found, Celery):
            return found
        raise WorkerError(f"{module}.{attribute} is not a Celery app ({type(found).__name__})",
                          fix=f"name an app that {module} defines, or leave out ':{attribute}'")
    for attr in ("app", "celery"):
        if isinstance(getattr(mod, attr, None), Celery):
            return getattr(mod, attr)
    found = [v for v in vars(mod).values() if isinstance(v, Celery)]
    if len(found) == 1:
        return found[0]
    raise WorkerError(f"module {module!r} defines no Celery app",
                      fix="create one in it: `app = ck.make_app('mytasks')`")


class Worker(OwnedProcess):
    """A real Celery worker for the course. Use it as a context manager, or call start() and stop()."""

    def __init__(self, app: str, *, name: str | None = None, queues: list[str] | str | None = None,
                 concurrency: int | None = 1, pool: str = "prefork", prefetch_multiplier: int | None = None,
                 loglevel: str = "INFO", max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None, config: dict | None = None,
                 logfile: str | os.PathLike | None = None, mingle: bool = False, cwd: str | os.PathLike | None = None,
                 started_by: str | None = None, env: dict[str, str] | None = None):
        if not isinstance(app, str):
            app = getattr(app, "__name__", None) or ""
            if not app:
                raise WorkerError("Worker() takes the module that holds the app, as a string",
                                  fix="e.g. Worker('coursekit.labs.first')")
        self.module = app
        self.index = next(_counter)
        self.name = name or f"w{self.index}"
        self.nodename = f"{self.name}-{os.getpid()}@{socket.gethostname()}"
        self.queues = [queues] if isinstance(queues, str) else list(queues or [])
        self.concurrency, self.pool, self.loglevel = concurrency, pool, loglevel
        self.prefetch_multiplier = prefetch_multiplier
        self.max_tasks_per_child, self.max_memory_per_child = max_tasks_per_child, max_memory_per_child
        self.config = dict(config or {})
        self.log_to = None if logfile is None else Path(logfile).resolve()
        """`-f FILE`: where the worker writes its log records instead of stderr (its streams keep the rest)."""
        self.env = dict(env or {})
        """Extra environment variables for this worker alone (e.g. MP_LOG=1 for billiard's own messages)."""
        self.mingle = mingle
        self.cwd = Path(cwd or os.getcwd()).resolve()
        self.logfile = state.logs_dir() / f"{self.name}-{os.getpid()}-{self.index}.log"
        self.pool_tmp = state.state_dir() / "pool-tmp" / self.logfile.stem
        """multiprocessing's temp folder for this worker (launch.POOL_TMP_ENV), removed once the worker is gone."""
        self.proc: subprocess.Popen | None = None
        self._copier: streams.Copier | None = None
        self.app: Celery | None = None
        self.ready_s: float | None = None
        self.started_by = started_by or census.origin()
        """What started this worker, as `coursekit status` lists it: a notebook, an exercise check, a script."""

    # -- the command ---------------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = launch.command("-A", self.module, "worker", "-E", "-n", self.nodename, "-l", self.loglevel,
                             "-P", self.pool)
        if self.concurrency is not None:
            cmd += ["-c", str(self.concurrency)]
        if self.queues:
            cmd += ["-Q", ",".join(self.queues)]
        if self.prefetch_multiplier is not None:
            cmd += ["--prefetch-multiplier", str(self.prefetch_multiplier)]
        if self.max_tasks_per_child is not None:
            cmd += ["--max-tasks-per-child", str(self.max_tasks_per_child)]
        if self.max_memory_per_child is not None:
            cmd += ["--max-memory-per-child", str(self.max_memory_per_child)]
        if self.log_to is not None:
            cmd += ["-f", str(self.log_to)]
        if not self.mingle:
            cmd.append("--without-mingle")  # mingle waits 1 s for other workers' replies at every start
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        url = str(self.app.conf.broker_url)
        if probe.scheme(url) in probe.REDIS_SCHEMES:
            env["COURSEKIT_BROKER_URL"] = url
        else:  # an app on RabbitMQ: its broker there, and the course's Redis (results, other apps) as before
            env["COURSEKIT_RABBITMQ_URL"] = url
            backend = str(self.app.conf.result_backend or "")
            if probe.scheme(backend) in probe.REDIS_SCHEMES:
                env["COURSEKIT_BROKER_URL"] = backend
        env[WORKER_CONFIG_ENV] = json.dumps(self.config) if self.config else ""
        # The notebook's folder is on the worker's import path, as the project root is in a real deployment.
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(self.cwd), env.get("PYTHONPATH", "")] if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(census.marks(self.started_by))  # how `coursekit status` tells this course's workers apart
        env[launch.POOL_TMP_ENV] = str(self.pool_tmp)
        env.update(self.env)
        return env

    # -- lifecycle -----------------------------------------------------------------------------------
    def spawn(self) -> "Worker":
        if self.running:
            return self
        if self.app is None:
            self.app = load_app(self.module)
        url = str(self.app.conf.broker_url)
        reason = probe.redis_answers(url) if probe.scheme(url) in probe.REDIS_SCHEMES else probe.amqp_answers(url)
        if reason is not None:  # a worker would retry forever; say so now instead
            raise WorkerError(f"worker {self.name} cannot reach its broker {probe.safe(url)}: {reason}",
                              fix=_LOG_DIAGNOSES[0][1])
        self._launch(_live, _live_lock)
        return self

    def _launch(self, live: set, lock) -> None:
        """Start `command()` in a process group of its own (so that `kill()` reaches the main process and its pool
        children, and a Ctrl-C in a terminal does not), its stdout and stderr copied apart and together
        (streams.py), and note it in `live`, the set its owner reaps at exit.

        A group, not a session: Linux's scheduler gives every session an equal share of the CPU (autogroup), so a
        notebook with eight workers in eight sessions of their own left its kernel one ninth of the machine, and
        the kill lab, timing a kill to a window of a second, missed it on a loaded machine. In the owner's session
        the kernel and its workers are scheduled as the processes they are."""
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=self.environment(), cwd=self.cwd,
                                     process_group=0)
        self._copier = streams.Copier(self.proc, self.logfile)
        self._spawned_at = time.monotonic()
        with lock:
            live.add(self)

    def wait_until_ready(self, timeout: float = DEFAULTS.worker_ready_timeout_s) -> "Worker":
        """Return once the worker answers a ping; raise with the log's tail if it exits or stays silent."""
        deadline = self._spawned_at + timeout
        patience = DEFAULTS.ping_timeout_s
        while True:
            if self.proc.poll() is not None:
                self._fail(f"worker {self.name} exited with code {self.proc.returncode} before it was ready")
            for marker, fix in _LOG_DIAGNOSES[:1]:
                if marker in self.logs():
                    self.kill()
                    self._fail(f"worker {self.name} cannot reach its broker {self.app.conf.broker_url}", fix)
            try:
                answered = answers_ping(self.app, self.nodename, patience)
            except OperationalError as exc:  # the broker went away while we waited
                self.kill()
                self._fail(f"lost the broker {self.app.conf.broker_url} while worker {self.name} started: {exc}",
                           _LOG_DIAGNOSES[0][1])
            if answered:
                self.ready_s = time.monotonic() - self._spawned_at
                return self
            patience = min(1.0, patience * 1.5)  # a loaded machine may answer slower than the first wait
            if time.monotonic() > deadline:
                self.kill()
                self._fail(f"worker {self.name} did not answer a ping within {timeout:.0f} s")

    def start(self, timeout: float = DEFAULTS.worker_ready_timeout_s) -> "Worker":
        return self.spawn().wait_until_ready(timeout)

    def stop(self, timeout: float = DEFAULTS.worker_stop_timeout_s) -> int | None:
        """Warm shutdown: finish running tasks, return prefetched ones to the queue, exit."""
        if not self.running:
            return self._forget()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return self._forget()

    def kill(self) -> int | None:
        """SIGKILL the whole process group: the main process and every pool child, with no chance to ack."""
        self._kill_group()
        return self._forget()

    def kill_child(self, pid: int | None = None) -> int:
        """SIGKILL one pool child (the first, or `pid`) and return its pid. The main process lives on."""
        kids = self.children
        if not kids:
            raise WorkerError(f"worker {self.name} has no pool children (pool {self.pool!r} runs tasks in "
                              "its main process)", fix="use pool='prefork' to have children to kill")
        target = pid if pid is not None else kids[0]
        if target not in kids:
            raise WorkerError(f"pid {target} is not a pool child of worker {self.name}", fix=f"pick one of {kids}")
        os.kill(target, signal.SIGKILL)
        return target

    def _forget(self) -> int | None:
        with _live_lock:
            _live.discard(self)
        if self._copier is not None:
            self._copier.drain()
        if self.proc is not None and self.proc.poll() is not None:
            shutil.rmtree(self.pool_tmp, ignore_errors=True)
        return None if self.proc is None else self.proc.returncode

    def _fail(self, problem: str, fix: str = "") -> None:
        if self._copier is not None and not self.running:
            self._copier.drain()  # an exited worker's last lines (its traceback) may still be on their way
        log = self.logs(tail=15)
        if not fix:
            fix = next((f for marker, f in _LOG_DIAGNOSES if marker in log), "read the worker log below")
        raise WorkerError(problem, fix=fix, details=f"--- last lines of {self.logfile} ---\n{log}")

    # -- looking at it -------------------------------------------------------------------------------
    def logs(self, tail: int | None = None, stream: str | None = None) -> str:
        """What the worker wrote (its last `tail` lines): both streams in the order they came, or only
        `stream="stdout"` or `stream="stderr"`. Celery's own records go to stderr, its banner to stdout."""
        if stream is None:
            return state.read_log(self.logfile, tail)
        if stream not in streams.STREAMS:
            raise WorkerError(f"no stream {stream!r}", fix="ask for stream='stdout' or stream='stderr', or leave it "
                                                          "out for both")
        return state.read_log(streams.stream_file(self.logfile, stream), tail)

    @property
    def children(self) -> list[int]:
        """Pids of the pool processes now (prefork only); a recycled or killed child is replaced by a new pid."""
        if not self.running:
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def __enter__(self) -> "Worker":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def consumes(self) -> list[str]:
        """The queues this worker reads: those given, else its app's default queue (once the app is loaded)."""
        if self.queues:
            return list(self.queues)
        return [self.app.conf.task_default_queue] if self.app is not None else []

    def __repr__(self) -> str:
        status = f"running, pid {self.pid}" if self.running else "stopped"
        queues = self.consumes or ["the app's default queue"]
        return f"<Worker {self.nodename} {status}, -P {self.pool} -c {self.concurrency}, queues {queues}>"


def start_all(*workers: Worker, timeout: float = DEFAULTS.worker_ready_timeout_s) -> list[Worker]:
    """Spawn every worker first, then wait for each: they boot side by side instead of one after another."""
    try:
        for w in workers:
            w.spawn()
        for w in workers:
            w.wait_until_ready(timeout)
    except BaseException:
        stop_all(workers)
        raise
    return list(workers)


def stop_all(workers=None, timeout: float = DEFAULTS.worker_stop_timeout_s, wait: bool = True) -> None:
    """Warm shutdown of these workers (default: every live worker and beat), side by side. With `wait=False` only
    ask: the workers finish shutting down by themselves (a warm shutdown waits a second or two for the pool), and a
    later `stop_all()`, or the end of this process, reaps them."""
    from .beat import live_beats  # beats are listed apart (beat.py), but "stop everything" means them too

    beats = live_beats() if workers is None else []
    with _live_lock:
        targets = list(workers) if workers is not None else [*_live, *beats]
    for w in targets:
        if w.running:
            w.proc.send_signal(signal.SIGTERM)
    if not wait:
        return
    for w in targets:
        w.stop(timeout)


def live_workers() -> list[Worker]:
    with _live_lock:
        return [w for w in _live if w.running]


@atexit.register
def _reap_at_exit() -> None:
    stop_all(timeout=3)
