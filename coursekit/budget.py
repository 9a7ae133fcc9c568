"""The time bound of one check. A check runs inside `with bounded(30):`, and every wait inside it (a worker's
boot, a result, a learner's function) asks `budget(seconds)` for how long it may wait: what it wants, or what is
left of the check's time if that is less. So a check never outlasts its bound, however its waits add up; only one
check runs at a time in a process."""
from __future__ import annotations

import time
from contextlib import contextmanager

from .outcomes import Uncheckable

CHECK_TIMEOUT_S = 30.0


_deadline: float | None = None  # set while a check runs: every wait inside it draws on the same 30 s
_limit = CHECK_TIMEOUT_S  # that check's whole time, for messages


@contextmanager
def bounded(seconds: float):
    """Everything inside (one check) shares one time bound of `seconds`; the waits inside ask `budget()`."""
    global _deadline, _limit
    _deadline, _limit = time.monotonic() + seconds, seconds
    try:
        yield
    finally:
        _deadline = None


def limit() -> float:
    """The running check's whole time, for messages that say it ran out."""
    return _limit


def budget(seconds: float) -> float:
    """`seconds`, or what is left of the running check's time if that is less; Uncheckable when none is left."""
    if _deadline is None:
        return seconds
    left = _deadline - time.monotonic()
    if left <= 0:
        raise Uncheckable(f"the check ran out of its {_limit:.0f} s; nothing was judged")
    return min(seconds, left)


def out_of_time(margin: float = 0.5) -> bool:
    """True when the running check has (almost) used up its time: a wait that gave up then was cut by the
    check's bound, and the learner should hear that, not why the wait itself ended."""
    return _deadline is not None and _deadline - time.monotonic() < margin
