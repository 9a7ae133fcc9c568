"""Waiting on processes the tests start and stop."""
from __future__ import annotations

import time

import psutil


def wait_until_gone(find, seconds: float = 8.0, every: float = 0.05) -> list:
    """Poll `find` every `every` s until it returns nothing or `seconds` pass; what is still there then."""
    deadline = time.monotonic() + seconds
    left = find()
    while left and time.monotonic() < deadline:
        time.sleep(every)
        left = find()
    return left


def running(pid: int) -> bool:
    """True while `pid` runs code (a zombie has exited: only its parent's wait() is missing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    """True once `pid` has exited, False if it still runs after `seconds`."""
    return not wait_until_gone(lambda: [pid] if running(pid) else [], seconds)
