"""Chapters 00 and 01: where a task runs, where its result goes, what calling it does."""
from __future__ import annotations

import os

from celery.signals import before_task_publish

from ... import probe, queues
from ..lab import DrillLab
from .common import error_name, finished, stored


def where_the_body_runs(lab: DrillLab) -> str:
    w = lab.worker("plain")
    ran = lab.tasks.pid.apply_async(queue=lab.queue("plain")).get(timeout=8)
    if ran in w.children:
        return "a pool process of the worker"
    if ran == w.pid:
        return "the worker's main process"
    return "the caller's process" if ran == os.getpid() else f"pid {ran}"


def where_get_reads(lab: DrillLab) -> str:
    lab.worker("plain")
    r = lab.tasks.add.apply_async((2, 3), queue=lab.queue("plain"))
    r.get(timeout=8)
    waiting = queues.depth(lab.app, lab.queue("plain"))
    if stored(lab, r.id) and waiting == 0:
        return "the result backend"
    return f"not in the backend ({waiting} message(s) in the queue)"


def unregistered_state(lab: DrillLab) -> str:
    lab.worker("plain")
    r = lab.app.send_task("coursekit.labs.drill.no_such_task", args=(1,), queue=lab.queue("plain"))
    return finished(lab, r).state


def delay_without_worker(lab: DrillLab) -> str:
    r = lab.tasks.add.apply_async((1, 2), queue=lab.private_queue())
    lab.wait_for(lambda: False, 0.3)  # a worker, had there been one, would have answered by now
    return r.state


def messages_from_apply(lab: DrillLab) -> int:
    sent = []

    def count(**_):
        sent.append(1)

    before_task_publish.connect(count, weak=False)
    try:
        r = lab.tasks.add.apply((2, 3))
    finally:
        before_task_publish.disconnect(count)
    return len(sent) + int(stored(lab, r.id))  # a message sent, or a result stored: either reached Redis


def expired_before_start(lab: DrillLab) -> str:
    with lab.backlog("plain") as queue:
        r = lab.tasks.add.apply_async((1, 1), queue=queue, expires=0.5)
        lab.wait_for(lambda: False, 0.8)
    return finished(lab, r).state


def retry_policy_runs(lab: DrillLab) -> int:
    lab.worker("plain")
    ledger = lab.ledger()
    r = lab.tasks.raises.apply_async((ledger.name,), queue=lab.queue("plain"), retry=True,
                                     retry_policy={"max_retries": 3, "interval_start": 0})
    finished(lab, r)
    lab.wait_for(lambda: False, 0.3)  # a re-run, if there were one, would be on its way
    return len(ledger)


def publish_with_broker_down(lab: DrillLab) -> str:
    from ...app import make_app

    port = probe.free_port()  # a port nothing listens on: a broker that is down
    other = make_app("drilldown", broker_url=f"redis://127.0.0.1:{port}/0", results=False)
    task = other.task(name=lab.tasks.add.name)(lab.tasks.add.run)
    try:
        task.apply_async((1, 2))
    except Exception as exc:  # what the caller gets: its class is the answer
        return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "returned normally"


__all__ = ["error_name"]
