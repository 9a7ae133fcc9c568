"""Chapters 04 and 10: priorities on Redis, and what `LLEN` counts."""
from __future__ import annotations

from ... import namespace
from ...ledger import client
from ..lab import DrillLab

SENT = [("p9", 9), ("p6", 6), ("p3", 3), ("none", None), ("p0", 0)]
"""Sent in this order while the worker is not reading its queue."""


def _waiting_run(lab: DrillLab) -> dict:
    ledger, redis = lab.ledger(), client()
    with lab.backlog("late") as queue:
        for name, priority in SENT:
            options = {} if priority is None else {"priority": priority}
            lab.tasks.mark.apply_async((ledger.name, name), queue=queue, **options)
        prefix = f"{namespace.prefix()}{queue}"
        lists = [k for k in redis.scan_iter(match=f"{prefix}*", count=1000)
                 if k.decode(errors="replace") == prefix or k.decode(errors="replace").startswith(prefix + "\x06\x16")]
        llen = redis.llen(prefix)
    lab.wait_for(lambda: len(ledger) >= len(SENT))
    return {"order": [e["key"] for e in ledger.entries()], "lists": len(lists), "llen": llen}


def run_order(lab: DrillLab) -> list[str]:
    return lab.memo("priorities.waiting", lambda: _waiting_run(lab))["order"]


def first_of_0_and_9(lab: DrillLab) -> str:
    order = run_order(lab)
    return "0" if order.index("p0") < order.index("p9") else "9"


def lists_per_queue(lab: DrillLab) -> int:
    return lab.memo("priorities.waiting", lambda: _waiting_run(lab))["lists"]


def llen_of_queue(lab: DrillLab) -> int:
    return lab.memo("priorities.waiting", lambda: _waiting_run(lab))["llen"]


def urgent_after_prefetch(lab: DrillLab) -> int:
    """On the default worker (multiplier 4, early ack): while a blocker runs, four priority-9 tasks arrive and the
    worker prefetches them; then one priority-0 task is sent. Where among the five short tasks does it run?"""
    w = lab.worker("plain")
    ledger, queue = lab.ledger(), lab.queue("plain")
    lab.tasks.nap.apply_async((2.0, ledger.name, "blocker"), queue=queue)
    lab.wait_for(lambda: len(ledger) >= 1)
    for i in range(4):
        lab.tasks.mark.apply_async((ledger.name, f"p9-{i}"), queue=queue, priority=9)
    inspect = lab.app.control.inspect(destination=[w.nodename], timeout=2)
    if not lab.wait_for(lambda: len((inspect.reserved() or {}).get(w.nodename, [])) >= 4):
        return -1  # the worker never held the four: the experiment did not happen as asked
    lab.tasks.mark.apply_async((ledger.name, "p0"), queue=queue, priority=0)
    lab.wait_for(lambda: len(ledger) >= 6)
    order = [e["key"] for e in ledger.entries() if e["key"] != "blocker"]
    return order.index("p0") + 1 if "p0" in order else -1
