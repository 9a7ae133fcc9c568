"""Chapter 12: chains, chords, and a task that waits for another."""
from __future__ import annotations

from celery import chain, chord

from ..lab import DrillLab
from .common import error_name, finished


def chain_with_immutable(lab: DrillLab) -> float:
    lab.worker("plain")
    t, q = lab.tasks, lab.queue("plain")
    r = chain(t.add.s(1, 2).set(queue=q), t.add.s(10).set(queue=q), t.add.si(5, 5).set(queue=q)).apply_async()
    return r.get(timeout=8)


def get_inside_a_task(lab: DrillLab) -> str:
    lab.worker("plain")
    r = finished(lab, lab.tasks.waits_inside.apply_async((1,), queue=lab.queue("plain")))
    return f"{error_name(r)}: {r.result}"


def chord_header_fails(lab: DrillLab) -> str:
    lab.worker("plain")
    t, q = lab.tasks, lab.queue("plain")
    r = chord([t.add.s(1, 1).set(queue=q), t.fails.s(2).set(queue=q)], t.total.s().set(queue=q)).apply_async()
    return error_name(finished(lab, r))


def step_after_a_failure(lab: DrillLab) -> int:
    lab.worker("plain")
    t, q, ledger = lab.tasks, lab.queue("plain"), lab.ledger()
    r = chain(t.mark.si(ledger.name, "one").set(queue=q), t.fails.si(2).set(queue=q),
              t.mark.si(ledger.name, "three").set(queue=q)).apply_async()
    finished(lab, r.parent)
    # One more task on the same one-process worker: a third step, had it been sent, would run before it.
    t.mark.apply_async((ledger.name, "after"), queue=q).get(timeout=8)
    return ledger.counts()["three"]


def chain_order(lab: DrillLab) -> list[str]:
    lab.worker("pair_a", "pair_b")
    t, q, ledger = lab.tasks, lab.queue("pair_a"), lab.ledger()
    chain(*(t.mark.si(ledger.name, step).set(queue=q) for step in ("charge", "ship", "email"))).apply_async() \
        .get(timeout=8)
    return [e["key"] for e in ledger.entries()]
