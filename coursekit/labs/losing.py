"""Chapter 06: lost tasks. Tasks whose side effect goes into a `coursekit.Ledger`, so that a lesson or a check counts
what really happened after a worker was killed, whatever the results say.

`charge(order, seconds, ledger, share)` is a payment: it works `share` of its time (half by default), records the
charge (the side effect), then works the rest. A kill in the first half loses the charge unless the message comes back; a kill in the second
half, after the charge, gives a duplicate if it does. It also notes its start in the ledger `<ledger>:started`, so
that a lesson can aim a kill at a task that has begun.

The exercises' tasks live in the learner's modules; their bodies are `pay` and `process` here.
"""
from __future__ import annotations

import os
import signal
import time

from ..ledger import Ledger
from . import lab_app, ran_here

app = lab_app(__name__)

LEDGER = "lost-lab"
POISON = "poison:"
"""An item `poison:<n>` makes `process` kill its own pool process, as an out-of-memory kill would, every time."""


def started(ledger: str) -> Ledger:
    """The ledger where tasks note that they began: kept apart, so the side-effect ledger counts only charges."""
    return Ledger(f"{ledger}:started")


@app.task
def charge(order, seconds=0.04, ledger=LEDGER, share=0.5):
    started(ledger).write(order)
    time.sleep(seconds * share)
    Ledger(ledger).write(order)  # the side effect: once per order, or the customer notices
    time.sleep(seconds * (1 - share))
    return {"order": order, **ran_here()}


@app.task
def nap(label, seconds=1.0):
    """Keeps a pool process busy for `seconds` (what an eta or prefetch experiment needs), then says where."""
    time.sleep(seconds)
    return {"label": label, **ran_here()}


SLOW_LATE, SLOW_EARLY = "/slow-late", "/slow-early"
"""An order ending in one of these takes PAY_SLOW_S and charges at 90 % or at 10 % of it: the check aims its child
kill before the charge at the first kind and the one after the charge at the second, each with 0.9 s to land in."""
PAY_S, PAY_SLOW_S = 0.05, 1.0
SHARE = {SLOW_LATE: 0.9, SLOW_EARLY: 0.1}


def pay(order, ledger: str = "ex06"):
    """Exercise 06.no_loss: the body of the learner's task. Records the payment part way through its work."""
    suffix = next((end for end in SHARE if str(order).endswith(end)), None)
    seconds, share = (PAY_SLOW_S, SHARE[suffix]) if suffix else (PAY_S, 0.5)
    started(ledger).write(order)
    time.sleep(seconds * share)
    Ledger(ledger).write(order)
    time.sleep(seconds * (1 - share))
    return order


def process(item, ledger: str = "ex06-fail", seconds: float = 0.6):
    """Exercise 06.fail_fast: the body of the learner's task. A `poison:` item kills its own process at once (a
    message that always crashes its worker); any other item works `seconds`, recording its start and its end."""
    started(ledger).write(item)
    if isinstance(item, str) and item.startswith(POISON):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    Ledger(ledger).write(item)
    return item
