"""Waiting on processes the tests start and stop."""
from __future__ import annotations

import time

import psutil


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    """True once `pid` has exited (a zombie counts: it runs no more code), False if it still runs after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
