"""Chapter 11: what beat does, and what two of them do."""
from __future__ import annotations

import shelve

from ...beat import Beat
from ...worker import Worker, stop_all
from ..lab import LAB, DrillLab


def _schedule(ledger: str, queue: str, every: float = 0.5) -> dict:
    return {"beat_schedule": {"drill-tick": {"task": "coursekit.labs.drill.mark", "schedule": every,
                                             "args": [ledger, "tick"], "options": {"queue": queue}}}}


def who_runs_the_body(lab: DrillLab) -> str:
    w = lab.worker("plain")
    ledger = lab.ledger()
    b = Beat(LAB, name="drill-beat", config=_schedule(ledger.name, lab.queue("plain")))
    try:
        b.start()
        lab.wait_for(lambda: len(ledger) >= 1)
    finally:
        b.stop()
    lab.memo("beat.file", lambda: b.schedule_file)
    ran_on = {e["worker"] for e in ledger.entries()}
    if ran_on == {w.nodename}:
        return "a worker (beat only sends the message)"
    return f"ran on {sorted(ran_on) or 'nothing'}"


def backend_cleanup_entry(lab: DrillLab) -> str:
    """The schedule file of the beat above: which entries did beat keep? With a Redis backend, results expire by
    themselves, so beat adds no `celery.backend_cleanup`."""
    if "beat.file" not in lab._memo:
        who_runs_the_body(lab)
    path = lab.memo("beat.file", lambda: None)
    with shelve.open(str(path), flag="r") as db:
        entries = sorted(db.get("entries", {}))
    if "celery.backend_cleanup" in entries:
        return "added"
    return "not added" if "drill-tick" in entries else f"no schedule read (entries: {entries})"


def two_beats(lab: DrillLab) -> str:
    ledger = lab.ledger()
    beats = [Beat(LAB, name=f"drill-beat{i}", config=_schedule(ledger.name, lab.private_queue())) for i in (1, 2)]
    try:
        for b in beats:
            b.spawn()
        for b in beats:
            b.wait_until_ready()
        sends = [len(b.sends()) for b in beats]
    finally:
        stop_all(beats, timeout=3)
    if all(n >= 1 for n in sends):
        return "each beat sends every entry: every run happens twice"
    return f"sends per beat: {sends}"


def beat_inside_gevent_worker(lab: DrillLab) -> str:
    class WithBeat(Worker):
        def command(self):
            return super().command() + ["-B"]

    w = WithBeat(LAB, name="drill-gevent-B", pool="gevent", concurrency=4, queues=[lab.private_queue()])
    w.spawn()
    try:
        # It either refuses at start (its log says why, then it exits) or runs: wait for one or the other.
        lab.wait_for(lambda: not w.running or "-B option" in w.logs() or w.app.control.ping(
            destination=[w.nodename], timeout=0.3), 9.5)
        line = next((ln for ln in w.logs().splitlines() if "-B option" in ln), "")
        if line:
            return line.strip()
        return "started, with beat inside" if w.running else "exited: " + w.logs(tail=3)
    finally:
        w.kill()
