"""Chapter 14, the interview drill: the tasks its experiments send (coursekit/drill/experiments/).

Every task writes what it did where the experiment can read it back: its return value, or an entry in a ledger
(`Ledger(name).write(key, ...)`) at the moment of its side effect, so an answer is observed, never assumed.
The drill starts one long-lived worker per configuration (coursekit/drill/lab.py), each reading a queue of its own,
and every experiment sends to the queue of the worker it needs.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from ..ledger import Ledger, client
from . import lab_app

app = lab_app(__name__)
log = get_task_logger(__name__)

ROOT_MARK = "coursekit-drill-root-handler"
"""The name of a handler this module puts on the root logger when a worker imports it: does it survive?"""

if "worker" in sys.argv:  # only in a worker; a notebook importing this module keeps its root logger as it was
    _mark = logging.NullHandler()
    _mark.set_name(ROOT_MARK)
    logging.getLogger().addHandler(_mark)


@app.task
def add(x, y):
    return x + y


@app.task
def pid():
    """The pid of the process that ran the body."""
    return os.getpid()


@app.task
def nap(seconds, ledger=None, key=None):
    """Sleep; with a ledger, note the start first (an experiment waits for it before it acts)."""
    if ledger:
        Ledger(ledger).write(key, phase="start")
    time.sleep(seconds)
    return os.getpid()


@app.task(bind=True)
def mark(self, ledger, key):
    """One entry in `ledger` for `key`: the order the worker ran tasks in, and which attempt it was."""
    Ledger(ledger).write(key, task_id=self.request.id, retries=self.request.retries,
                         worker=self.request.hostname)
    return key


@app.task
def say(text):
    """A bare print(), as tasks written in a hurry do."""
    print(text)
    return text


@app.task
def log_line(text):
    log.info(text)
    return text


@app.task
def root_handlers():
    """The names of the root logger's handlers, as the worker's pool process sees them."""
    return [h.get_name() or type(h).__name__ for h in logging.getLogger().handlers]


@app.task(bind=True)
def retry_fast(self, ledger):
    """Fails every time; retries after 0.1 s with the default max_retries, re-raising a ValueError at the end."""
    Ledger(ledger).write(self.request.id, retries=self.request.retries)
    raise self.retry(countdown=0.1, exc=ValueError("still failing"))


@app.task(bind=True)
def retry_default(self, ledger):
    """Retries with no countdown: the wait comes from default_retry_delay."""
    Ledger(ledger).write(self.request.id, retries=self.request.retries, at_retry=time.time())
    raise self.retry()


@app.task(bind=True, autoretry_for=(ValueError,), retry_backoff=1, retry_jitter=False, max_retries=2)
def backoff(self, ledger):
    Ledger(ledger).write(self.request.id, retries=self.request.retries)
    raise ValueError("flaky")


@app.task(bind=True)
def raises(self, ledger):
    """Raises once per run: counts how many times the task body itself ran."""
    Ledger(ledger).write(self.request.id)
    raise ValueError("boom")


@app.task(bind=True)
def soft_limited(self, seconds):
    """Sleeps; returns the name of the exception that interrupted it, if any."""
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded as exc:
        return type(exc).__name__
    return "finished"


@app.task
def charge_once(ledger, order):
    """The idempotent way: a SET NX on the business key decides which copy charges; the others do nothing."""
    if client().set(f"{Ledger(ledger).redis_key}:done:{order}", 1, nx=True, ex=60):
        Ledger(ledger).write(order)
        return "charged"
    return "skipped"


@app.task
def hold_memory(megabytes):
    """Keeps `megabytes` MB alive in this process until the task ends (freed after: the peak is what counts)."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is really resident
    return os.getpid()


@app.task
def waits_inside(x):
    """The anti-pattern: wait on another task's result inside a task (refused by default)."""
    return add.delay(x, 1).get(timeout=2)


@app.task
def fails(x):
    raise ValueError(f"bad input {x!r}")


@app.task
def total(numbers):
    return sum(numbers)


@app.task
def count_rows(path, order_id):
    """What the task sees of a row another process is writing: 1 when it is committed, 0 when not (yet)."""
    with sqlite3.connect(path, timeout=2) as db:
        return db.execute("SELECT count(*) FROM orders WHERE id = ?", (order_id,)).fetchone()[0]


@app.task(rate_limit="30/m")
def limited(ledger, key):
    """At most one start every 2 s, per worker (Celery's rate limits are a token bucket in each worker)."""
    Ledger(ledger).write(key, worker=os.getpid())
    return key


@app.task
async def coroutine_task(x):
    """An `async def` body under @app.task."""
    return x * 2
