"""What a check's worker runs (`celery -A coursekit.checks.host`) when the learner's module holds the tasks: the
module loaded the way the check loads it (`learner.execute`, `____` harmless), and its Celery app served.

With SLOW_REDIS_ENV set (seconds), every Redis command a task body sends waits that long first, as on a Redis across
a network: two copies of a task that start at the same moment then overlap by whole commands, so a lock taken with
two commands (GET, then SET) races as it would under real load, not only by luck of microseconds."""
import os
import threading
import time
from pathlib import Path

import redis
from celery import signals

from ..checking import FILE_ENV, NAME_ENV, SLOW_REDIS_ENV, app_in
from ..learner import execute

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
