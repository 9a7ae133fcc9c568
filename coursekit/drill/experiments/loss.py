"""Chapter 06: what happens to a task when the process running it dies, and what `inspect` says."""
from __future__ import annotations

from ... import queues
from ..lab import DrillLab
from .common import finished


def _kill_child_mid_task(lab: DrillLab, name: str) -> dict:
    w = lab.worker(name)
    ledger = lab.ledger()
    r = lab.tasks.nap.apply_async((1.0, ledger.name, "job"), queue=lab.queue(name))
    lab.wait_for(lambda: len(ledger) >= 1)
    w.kill_child()
    finished(lab, r)
    lab.wait_for(lambda: False, 0.3)  # a redelivered copy would have started by now
    return {"state": r.state, "runs": len(ledger)}


def _fate(seen: dict) -> str:
    if seen["state"] == "FAILURE" and seen["runs"] == 1:
        return "FAILURE (WorkerLostError), not run again"
    if seen["state"] == "SUCCESS" and seen["runs"] >= 2:
        return "requeued and run again: SUCCESS"
    return f"{seen['state']} after {seen['runs']} run(s)"


def child_killed_early_ack(lab: DrillLab) -> str:
    return _fate(lab.memo("loss.early", lambda: _kill_child_mid_task(lab, "plain")))


def child_killed_acks_late(lab: DrillLab) -> str:
    return _fate(lab.memo("loss.late", lambda: _kill_child_mid_task(lab, "late")))


def runs_with_reject_on_lost(lab: DrillLab) -> int:
    return lab.memo("loss.reject", lambda: _kill_child_mid_task(lab, "reject"))["runs"]


def whole_worker_killed(lab: DrillLab) -> str:
    queue = lab.private_queue()
    w = lab.fresh("plain", queue=queue)
    ledger = lab.ledger()
    r = lab.tasks.nap.apply_async((3.0, ledger.name, "job"), queue=queue)
    lab.wait_for(lambda: len(ledger) >= 1)
    w.kill()
    waiting, held = queues.depth(lab.app, queue), queues.held(lab.app, queue)
    queues.drop_held(lab.app, queue)
    if r.state == "PENDING" and waiting == 0 and held == 0:
        return "lost: PENDING for ever, no copy left in Redis"
    return f"{r.state}, {waiting} waiting, {held} held in unacked"


def inspect_nobody(lab: DrillLab) -> str:
    reply = lab.app.control.inspect(destination=["nobody@nowhere"], timeout=0.5).active()
    return repr(reply)
