"""Chapter 09: what each pool is made of and what it ignores."""
from __future__ import annotations

from ..lab import DrillLab
from .common import finished


def processes_of_threads_pool(lab: DrillLab) -> int:
    w = lab.worker("threads")
    return 1 + len(w.children)


def processes_of_prefork_c1(lab: DrillLab) -> int:
    w = lab.worker("plain")
    return 1 + len(w.children)


def time_limit_on_threads(lab: DrillLab) -> str:
    lab.worker("threads")
    r = finished(lab, lab.tasks.nap.apply_async((1.5,), queue=lab.queue("threads"), time_limit=0.5))
    return r.state


def busy_solo_answers_inspect(lab: DrillLab) -> str:
    w = lab.worker("solo")
    ledger = lab.ledger()
    r = lab.tasks.nap.apply_async((1.5, ledger.name, "busy"), queue=lab.queue("solo"))
    lab.wait_for(lambda: len(ledger) >= 1)
    reply = lab.app.control.inspect(destination=[w.nodename], timeout=0.5).active()
    finished(lab, r)
    return repr(reply)
