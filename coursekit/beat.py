"""`Beat`: one real `celery -A <module> beat` subprocess, run like a `Worker`.

Beat only publishes: it reads `beat_schedule` from its app and sends each entry's task when it is due; a worker
runs it. `start()` returns once beat has sent its first message (a fresh beat sends an entry one interval after it
starts, not at once). Its schedule file (PersistentScheduler's shelve) lives in a temporary folder of its own, so
two beats never share one by accident; pass `schedule_file=` of an earlier beat to restart with its state. Like a
worker it runs under `coursekit.launch`, in a process group of its own, and dies with the process that started it,
even when that process is SIGKILLed; `logs()` reads what it wrote, stdout and stderr apart or together.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from . import launch, state
from .defaults import DEFAULTS
from .errors import WorkerError
from .worker import Worker, load_app

SENDING = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): INFO/\w+\] Scheduler: Sending due task (?P<entry>\S+) "
                     r"\((?P<task>[^)]+)\)", re.M)
"""The line beat logs (at INFO) for every message it sends: `Scheduler: Sending due task tick (labs.beat.tick)`."""

STARTING = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): INFO/\w+\] beat: Starting\.\.\.", re.M)

_live: "set[Beat]" = set()
_live_lock = threading.Lock()
_folders: list[Path] = []  # schedule folders this process made: removed when it exits


class Beat(Worker):
    """A real `celery beat` for the course. `with ck.Beat("coursekit.labs.periodic") as b:`, or start() and stop().

    `config` adds settings to the app, as for a Worker (e.g. a `beat_schedule` whose schedules are seconds);
    `schedule_file` reuses the state of an earlier beat (its `.schedule_file`)."""

    def __init__(self, app: str, *, name: str | None = None, config: dict | None = None,
                 schedule_file: str | Path | None = None, loglevel: str = "INFO", max_interval: float | None = None,
                 cwd=None, started_by: str | None = None, env: dict[str, str] | None = None):
        super().__init__(app, name=name, concurrency=None, loglevel=loglevel, config=config, cwd=cwd,
                         started_by=started_by, env=env)
        if name is None:
            self.name = f"beat{self.index}"
        self.logfile = state.logs_dir() / f"{self.name}-{os.getpid()}-{self.index}.log"
        self.max_interval = max_interval
        if schedule_file is None:
            folder = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=state.state_dir()))
            _folders.append(folder)
            schedule_file = folder / "celerybeat-schedule"
        self.schedule_file = Path(schedule_file).resolve()
        """PersistentScheduler's shelve; on disk it may be several files (`.dat`, `.dir`, `.bak`), by Python's dbm."""
        self.first_sent_s: float | None = None
        self._log_mark = 0

    def command(self) -> list[str]:
        cmd = launch.command("-A", self.module, "beat", "-l", self.loglevel, "-s", str(self.schedule_file))
        if self.max_interval is not None:
            cmd += ["--max-interval", str(int(self.max_interval))]
        return cmd

    # -- lifecycle -----------------------------------------------------------------------------------
    def spawn(self) -> "Beat":
        if self.running:
            return self
        if self.app is None:
            self.app = load_app(self.module)
        self._log_mark = len(self.logs(stream="stderr"))  # the log is appended to: a restart reads its own lines
        self._launch(_live, _live_lock)  # beats are kept apart from workers: the recorder never waits on one
        return self

    def wait_until_ready(self, timeout: float = DEFAULTS.worker_ready_timeout_s) -> "Beat":
        """Return once beat has sent its first message (its log says `Sending due task`); raise with the log's tail
        if it exits first or sends nothing within `timeout` s (an entry due later than that, or none at all)."""
        deadline = self._spawned_at + timeout
        while True:
            this_life = self.logs(stream="stderr")[self._log_mark:]
            if SENDING.search(this_life):
                self.first_sent_s = self.ready_s = time.monotonic() - self._spawned_at
                return self
            if self.proc.poll() is not None:
                self._fail(f"beat {self.name} exited with code {self.proc.returncode} before it sent anything")
            if "Cannot connect to" in this_life:
                self.kill()
                self._fail(f"beat {self.name} cannot reach its broker {self.app.conf.broker_url}")
            if time.monotonic() > deadline:
                self.kill()
                self._fail(f"beat {self.name} sent no message within {timeout:.0f} s",
                           "give its app a beat_schedule entry due sooner than that (a fresh beat sends an entry "
                           "one interval after it starts)")
            time.sleep(0.05)

    def stop(self, timeout: float = DEFAULTS.worker_stop_timeout_s) -> int | None:
        """SIGTERM: beat syncs its schedule file and exits (SIGKILL if it lingers)."""
        return super().stop(timeout)

    def _forget(self) -> int | None:
        with _live_lock:
            _live.discard(self)
        if self._copier is not None:
            self._copier.drain()
        return None if self.proc is None else self.proc.returncode

    # -- looking at it -------------------------------------------------------------------------------
    def sends(self) -> list[dict]:
        """Every message beat logged sending so far: `entry`, `task`, `at` (its log's local time, a datetime)."""
        return [{"entry": m["entry"], "task": m["task"],
                 "at": datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f")}
                for m in SENDING.finditer(self.logs(stream="stderr"))]

    def began(self) -> datetime | None:
        """When beat's scheduler last started (its log's `beat: Starting...`, local time), or None before that."""
        found = list(STARTING.finditer(self.logs(stream="stderr")[self._log_mark:]))
        return datetime.strptime(found[-1]["at"], "%Y-%m-%d %H:%M:%S,%f") if found else None

    @property
    def children(self) -> list[int]:
        return []

    def kill_child(self, pid: int | None = None) -> int:
        raise WorkerError(f"beat {self.name} has no pool children", fix="kill() stops the whole beat")

    def __repr__(self) -> str:
        status = f"running, pid {self.pid}" if self.running else "stopped"
        return f"<Beat {self.name} of {self.module} {status}, schedule file {self.schedule_file}>"


def live_beats() -> list[Beat]:
    with _live_lock:
        return [b for b in _live if b.running]


@atexit.register
def _reap_at_exit() -> None:
    with _live_lock:
        running = list(_live)
    for one in running:
        one.stop(timeout=3)
    for folder in _folders:
        shutil.rmtree(folder, ignore_errors=True)
