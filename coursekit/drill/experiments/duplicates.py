"""Chapter 07: time limits, a hanging task, and charging once."""
from __future__ import annotations

from ..lab import DrillLab
from .common import error_name, finished


def soft_limit_seen_by_task(lab: DrillLab) -> str:
    lab.worker("plain")
    r = lab.tasks.soft_limited.apply_async((3,), queue=lab.queue("plain"), soft_time_limit=0.5)
    return str(r.get(timeout=8))


def hard_limit_prefork(lab: DrillLab) -> str:
    lab.worker("plain")
    r = finished(lab, lab.tasks.nap.apply_async((3,), queue=lab.queue("plain"), time_limit=0.8))
    return error_name(r)


def which_inspect_lists_it(lab: DrillLab) -> str:
    w = lab.worker("m1")
    ledger = lab.ledger()
    r = lab.tasks.nap.apply_async((1.0, ledger.name, "hangs"), queue=lab.queue("m1"))
    lab.wait_for(lambda: len(ledger) >= 1)
    inspect = lab.app.control.inspect(destination=[w.nodename], timeout=2)
    found = []
    for method in ("active", "reserved", "scheduled"):
        entries = (getattr(inspect, method)() or {}).get(w.nodename, [])
        if any((e.get("request") or e).get("id") == r.id for e in entries):
            found.append(method)
    finished(lab, r)
    return " ".join(found) or "none"


def charges_with_set_nx(lab: DrillLab) -> int:
    lab.worker("pair_a", "pair_b")
    ledger = lab.ledger()
    copies = [lab.tasks.charge_once.apply_async((ledger.name, "order-42"), queue=lab.queue("pair_a"))
              for _ in range(3)]
    for r in copies:
        r.get(timeout=8)
    return ledger.counts()["order-42"]
