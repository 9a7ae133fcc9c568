"""Chapter 02: what `self.retry()` and autoretry really do."""
from __future__ import annotations

from ..lab import DrillLab
from .common import finished


def _exhausted(lab: DrillLab) -> dict:
    lab.worker("plain")
    ledger = lab.ledger()
    r = finished(lab, lab.tasks.retry_fast.apply_async((ledger.name,), queue=lab.queue("plain")))
    entries = ledger.entries()
    return {"runs": len(entries), "ids": {e["key"] for e in entries}, "id": r.id,
            "error": type(r.result).__name__ if r.state == "FAILURE" else r.state}


def attempts_with_defaults(lab: DrillLab) -> int:
    return lab.memo("retries.exhausted", lambda: _exhausted(lab))["runs"]


def error_when_exhausted(lab: DrillLab) -> str:
    return lab.memo("retries.exhausted", lambda: _exhausted(lab))["error"]


def retry_task_id(lab: DrillLab) -> str:
    seen = lab.memo("retries.exhausted", lambda: _exhausted(lab))
    if seen["ids"] == {seen["id"]}:
        return "the same id as the first attempt"
    return f"{len(seen['ids'])} different ids"


def default_retry_wait(lab: DrillLab) -> int:
    """The retry's eta, as the worker holding it reports, minus the moment the task called retry()."""
    from datetime import datetime

    from ... import queues

    queue = lab.private_queue()
    w = lab.fresh("plain", queue=queue)  # it will hold the retry for minutes: a worker of this experiment's own
    try:
        ledger = lab.ledger()
        r = lab.tasks.retry_default.apply_async((ledger.name,), queue=queue)
        lab.wait_for(lambda: len(ledger) >= 1)
        inspect = lab.app.control.inspect(destination=[w.nodename], timeout=2)

        def eta():
            for entry in (inspect.scheduled() or {}).get(w.nodename, []):
                if entry["request"]["id"] == r.id:
                    return entry["eta"]
            return None

        found = lab.wait_for(eta)
        if not found:
            return -1
        called = ledger.entries()[0]["at_retry"]
        return round(datetime.fromisoformat(found).timestamp() - called)
    finally:
        w.kill()
        queues.drop_held(lab.app, queue)


def backoff_second_wait(lab: DrillLab) -> float:
    lab.worker("plain")
    ledger = lab.ledger()
    finished(lab, lab.tasks.backoff.apply_async((ledger.name,), queue=lab.queue("plain")))
    at = [e["at"] for e in ledger.entries()]
    return round(at[2] - at[1], 1) if len(at) >= 3 else -1.0
