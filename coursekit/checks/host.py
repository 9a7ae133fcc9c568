"""What a check's worker runs (`celery -A coursekit.checks.host`) when the learner's module holds the tasks: the
module loaded the way the check loads it (`learner.execute`, `____` harmless), and its Celery app served.

With SLOW_REDIS_ENV set (seconds), every Redis command a task body sends waits that long first, as on a Redis across
a network: two copies of a task that start at the same moment then overlap by whole commands, so a lock taken with
two commands (GET, then SET) races as it would under real load, not only by luck of microseconds. With
STATE_REPORT_ENV set (a file), the worker appends the state file it resolved at its start (its cwd and pid applied):
the check then knows which file each start read, and what to delete. With HOSTNAME_ENV set, the worker stands for one
on another machine: Python's ways of asking the host's name answer that name."""
import os
import threading
import time
from pathlib import Path

import redis
from celery import signals

from ..checking import FILE_ENV, HOSTNAME_ENV, NAME_ENV, SLOW_REDIS_ENV, STATE_REPORT_ENV, app_in
from ..learner import execute



def _as_host(name: str) -> None:
    """Answer `name` wherever Python code asks this machine's name: the worker stands for one on another host."""
    import platform
    import socket

    real = os.uname()
    socket.gethostname = lambda: name
    platform.node = lambda: name
    os.uname = lambda: type(real)((real.sysname, name, real.release, real.version, real.machine))


if os.environ.get(HOSTNAME_ENV):  # before the learner's module runs: a name it reads at import is the new one too
    _as_host(os.environ[HOSTNAME_ENV])

module = execute(Path(os.environ[FILE_ENV]), os.environ[NAME_ENV])
app = app_in(module)
if app is None:
    raise RuntimeError(f"{Path(os.environ[FILE_ENV]).name} defines no Celery app")


def _slow_redis(delay: float) -> None:
    inside = threading.local()
    plain = redis.Redis.execute_command

    def execute_command(self, *args, **options):
        if getattr(inside, "task", False):
            time.sleep(delay)
        return plain(self, *args, **options)

    redis.Redis.execute_command = execute_command
    signals.task_prerun.connect(lambda **_: setattr(inside, "task", True), weak=False)
    signals.task_postrun.connect(lambda **_: setattr(inside, "task", False), weak=False)


if os.environ.get(SLOW_REDIS_ENV):
    _slow_redis(float(os.environ[SLOW_REDIS_ENV]))


def _report_state_db(report: str) -> None:
    import json

    def started(sender=None, instance=None, **_):
        db = getattr(instance, "statedb", None)
        entry = {"node": sender, "pid": os.getpid(), "statedb": str(Path(db).resolve()) if db else None}
        with open(report, "a") as out:
            out.write(json.dumps(entry) + "\n")

    signals.celeryd_after_setup.connect(started, weak=False)


if os.environ.get(STATE_REPORT_ENV):
    _report_state_db(os.environ[STATE_REPORT_ENV])
