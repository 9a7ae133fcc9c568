"""Chapter 07: stuck tasks and time limits. `render` stands for a call that may never return (a socket with no
timeout, a lock never released); `cleanup` is what a task must do when it gives up (delete a half-written file),
and writes a marker to the ledger `cleanups` so that a lesson or a check can see it ran."""
import os
import time

from celery.exceptions import SoftTimeLimitExceeded

from . import lab_app, ran_here
from ..ledger import Ledger

app = lab_app(__name__)


def cleanups() -> Ledger:
    return Ledger("cleanups")


def render(job, seconds=None):
    """Renders `job`: takes `seconds`, or forever when None (it sleeps in short steps, as a stuck read does)."""
    begun = time.monotonic()
    while seconds is None or time.monotonic() - begun < seconds:
        time.sleep(0.05)
    return f"rendered {job}"


def cleanup(job):
    cleanups().write(job, pid=os.getpid())


def spin(seconds):
    """Pure-Python CPU work for `seconds`: no sleep, no IO, so nothing in it yields."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@app.task
def hang(job, seconds=None):
    """No limit at all: runs until render returns."""
    return render(job, seconds)


@app.task(soft_time_limit=1, time_limit=3)
def export(job, seconds=None):
    """A soft limit of 1 s, caught to clean up, then re-raised so the task still ends in FAILURE; the hard limit of
    3 s is the backstop should the cleanup itself hang."""
    try:
        return render(job, seconds)
    except SoftTimeLimitExceeded:
        cleanup(job)
        raise


@app.task(time_limit=1)
def crunch(seconds):
    """A CPU loop under a hard limit of 1 s: past it the pool child is killed."""
    return {**ran_here(), "loops": spin(seconds)}


@app.task(soft_time_limit=0.5, time_limit=1)
def limited_nap(seconds):
    """Sleeps `seconds` under limits of 0.5 s (soft) and 1 s (hard): which pool stops it?"""
    time.sleep(seconds)
    return {**ran_here(), "slept": seconds}
