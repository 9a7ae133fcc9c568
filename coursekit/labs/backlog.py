"""Chapter 04's exercises: the work every learner task does with its item. The tasks themselves live in the
learner's modules (their priorities are the answer); this only gives them a body, and the checks a way to keep
the worker busy for exactly as long as they need."""
from __future__ import annotations

import time
from pathlib import Path

from . import ran_here

HOLD = "hold:"
"""An item `hold:<file>` is a check's blocker (see `work`)."""
HOLD_LIMIT_S = 20.0
"""A blocker never holds the worker longer than this, whatever happened to the check that sent it."""


def work(item):
    """A moment's work on `item` (20 ms), then where and when it ran.

    `hold:<file>` is what a check sends first to occupy its one-process worker: it writes `<file>.started`, then
    waits until `<file>` exists (at most HOLD_LIMIT_S). The check sends the rest while it waits, then releases it:
    how long the worker stays busy does not depend on how fast the machine is."""
    if isinstance(item, str) and item.startswith(HOLD):
        gate = Path(item[len(HOLD):])
        Path(f"{gate}.started").touch()
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(0.02)
    return {"item": item, **ran_here()}
