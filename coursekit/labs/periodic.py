"""Chapter 11: beat. Tasks that periodic entries send, and what each run leaves behind.

`tick(entry)` records that it ran in the ledger `ticks` (keyed by the entry, with its task id), so a lesson counts
runs from a witness that outlives the worker, beside the sends the recorder saw. `sweep(entry, period)` is the same
job made idempotent per schedule slot: it runs its body only if it is first to take the slot's lock, a Redis key set
with SET NX and a TTL, so a second beat's copy of the same slot finds it taken and does nothing. `next_runs` computes
when a schedule (a crontab, say) will be due, in its app's time zone, without running beat. The schedules themselves
are not here: a lesson gives each beat its `beat_schedule` (`Beat(config=...)`).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from ..ledger import Ledger, client
from . import lab_app, ran_here

app = lab_app(__name__)


def lock_key(name: str) -> str:
    """A lock's Redis key, in the course namespace like every key the course writes."""
    from .. import namespace

    return f"{namespace.prefix()}lock:{name}"


def slot_lock(entry: str, period: float) -> bool:
    """Take the lock of `entry`'s current slot (the period of the schedule that now falls in): True for the first
    caller of the slot, False for any later one. The key expires by itself a few periods later."""
    slot = int(time.time() // period)
    return bool(client().set(lock_key(f"{entry}:{slot}"), 1, nx=True, px=int(period * 3000)))


@app.task(bind=True)
def tick(self, entry):
    Ledger("ticks").write(entry, task_id=self.request.id)
    return {"entry": entry, **ran_here()}


@app.task(bind=True)
def sweep(self, entry, period):
    if not slot_lock(entry, period):
        return {"entry": entry, "skipped": True, **ran_here()}
    Ledger("ticks").write(entry, task_id=self.request.id)
    return {"entry": entry, "skipped": False, **ran_here()}


def do_work(ledger: str, key, task_id=None) -> dict:
    """The side effect of an exercise's periodic task: one ledger entry, the witness that it ran."""
    Ledger(ledger).write(key, task_id=task_id)
    return {"key": key, **ran_here()}


def next_runs(schedule, after: datetime, n: int = 3) -> list[datetime]:
    """The next `n` times `schedule` (a crontab bound to its app, so in the app's time zone) is due after `after`,
    in UTC, as beat would compute them: each from the one before."""
    out, last = [], after
    for _ in range(n):
        last_run, delta, _now = schedule.remaining_delta(last)
        last = last_run + delta
        out.append(last.astimezone(timezone.utc))
    return out
