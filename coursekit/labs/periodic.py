"""Chapter 11: beat. Tasks that periodic entries send, and what each run leaves behind.

`tick(entry)` records that it ran (the ledger `ticks`, keyed by the entry), so a lesson counts runs from a witness
that outlives the worker, next to the sends the recorder saw. `sweep(entry, period)` is the same periodic job made
idempotent per schedule slot: it runs its body only if it wins a Redis lock (SET NX) that expires by itself a little
before the next slot, so a second beat's copy of the same slot finds the lock taken and does nothing.
The schedules themselves are not here: a lesson gives each beat its `beat_schedule` (`Beat(config=...)`).
"""
from __future__ import annotations

import time

from ..ledger import Ledger, client
from . import lab_app, ran_here

app = lab_app(__name__)

LOCK_SHARE = 0.8
"""The lock of a slot lives for this share of the period: past any copy of the same slot (a second beat sends it
less than a period later), gone before the next slot."""


def slot_lock(entry: str, period: float) -> bool:
    """Take the lock of `entry`'s current slot: True for the first caller, False while it is held."""
    from .. import namespace

    key = f"{namespace.prefix()}lock:{entry}"
    return bool(client().set(key, 1, nx=True, px=int(period * LOCK_SHARE * 1000)))


@app.task(bind=True)
def tick(self, entry):
    Ledger("ticks").write(entry, task_id=self.request.id)
    return {"entry": entry, **ran_here()}


@app.task(bind=True)
def sweep(self, entry, period):
    if not slot_lock(entry, period):
        return {"entry": entry, "skipped": True, **ran_here()}
    Ledger("ticks").write(entry, task_id=self.request.id)
    time.sleep(0.05)
    return {"entry": entry, "skipped": False, **ran_here()}
