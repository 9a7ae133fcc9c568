"""Chapter 13: Celery inside a real application (transactions, deploys, rate limits, revokes, serializers, async
code, eager mode). Experiments of the drill's own, on its own tasks."""
from __future__ import annotations

import sqlite3
import tempfile

from ... import state
from ..lab import DrillLab
from .common import error_name, finished


def task_before_commit(lab: DrillLab) -> str:
    lab.worker("plain")
    folder = tempfile.mkdtemp(prefix="drill-db-", dir=state.state_dir())
    path = f"{folder}/shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    db = sqlite3.connect(path, timeout=2)
    try:
        db.execute("INSERT INTO orders (id) VALUES (7)")  # the transaction is open, not committed
        seen = lab.tasks.count_rows.apply_async((path, 7), queue=lab.queue("plain")).get(timeout=8)
        db.commit()
        after = lab.tasks.count_rows.apply_async((path, 7), queue=lab.queue("plain")).get(timeout=8)
    finally:
        db.close()
    if seen == 0 and after == 1:
        return "no row: the transaction had not committed"
    return f"{seen} row(s) before the commit, {after} after"


def rate_limit_scope(lab: DrillLab) -> str:
    a, b = lab.worker("pair_a", "pair_b")
    ledger = lab.ledger()
    for key in range(3):
        lab.tasks.limited.apply_async((ledger.name, key), queue=lab.queue("pair_a"))
    lab.wait_for(lambda: len(ledger) >= 3)
    owner = {p: "a" for p in a.children} | {p: "b" for p in b.children}
    starts = [(e["at"], owner.get(e["worker"], "?")) for e in ledger.entries()]
    by_worker = {w: sorted(t for t, o in starts if o == w) for w in ("a", "b")}
    if not (by_worker["a"] and by_worker["b"]):
        return f"one worker ran all {len(starts)}"
    across = abs(by_worker["a"][0] - by_worker["b"][0])
    within = min((ts[i + 1] - ts[i] for ts in by_worker.values() for i in range(len(ts) - 1)), default=None)
    if across < 1.0 and (within is None or within >= 1.5):
        return "each worker on its own"
    return f"starts {across:.1f} s apart across workers, {within} s within one"


def revoke_after_restart(lab: DrillLab) -> str:
    """Revoke a task still waiting in the queue, then restart the only worker (no --statedb, no mingle)."""
    from ... import queues

    queue = lab.private_queue()
    first = lab.fresh("plain", queue=queue)
    control = lab.app.control
    # A backlog: the worker stops reading, so the message waits in Redis, not in the worker's hands.
    stopped = lab.wait_for(lambda: control.cancel_consumer(queue, destination=[first.nodename], reply=True,
                                                           timeout=2), 6)
    r = lab.tasks.add.apply_async((2, 2), queue=queue)
    if not stopped or not lab.wait_for(lambda: queues.depth(lab.app, queue) == 1, 3):
        first.kill()
        return "the worker kept reading its queue: no backlog to test"
    control.revoke(r.id, destination=[first.nodename])
    inspect = control.inspect(destination=[first.nodename], timeout=2)
    lab.wait_for(lambda: r.id in (inspect.revoked() or {}).get(first.nodename, []))
    first.stop()  # a deploy: warm shutdown, then a new worker
    second = lab.fresh("plain", queue=queue)
    try:
        return finished(lab, r).state
    finally:
        second.kill()


def pickled_message(lab: DrillLab) -> str:
    w = lab.worker("plain")
    mark = len(w.logs())
    r = lab.tasks.add.apply_async((1, 2), queue=lab.queue("plain"), serializer="pickle")
    refused = lab.wait_for(lambda: any("untrusted content" in ln or "ContentDisallowed" in ln
                                       for ln in w.logs()[mark:].splitlines()))
    if refused and r.state == "PENDING":
        return "refused and dropped: it stays PENDING"
    return f"{r.state}, {'refusal' if refused else 'nothing'} in the worker log"


def async_def_task(lab: DrillLab) -> str:
    lab.worker("plain")
    return error_name(finished(lab, lab.tasks.coroutine_task.apply_async((21,), queue=lab.queue("plain"))))


def eager_hides_time_limit(lab: DrillLab) -> str:
    """Eager mode, on purpose, next to a real worker: the same call with `time_limit=0.5` on a 1 s task."""
    from ...app import make_app

    lab.worker("plain")
    eager = make_app("drilleager", task_always_eager=True)  # EAGER, labelled: this is what it hides
    twin = eager.task(name=lab.tasks.nap.name)(lab.tasks.nap.run)
    in_eager = twin.apply_async((1.0,), time_limit=0.5)
    real = finished(lab, lab.tasks.nap.apply_async((1.0,), queue=lab.queue("plain"), time_limit=0.5))
    if real.state == "FAILURE":
        return in_eager.state
    return f"eager {in_eager.state}, and the worker too: {real.state}"


def new_argument_old_worker(lab: DrillLab) -> str:
    lab.worker("plain")
    r = lab.app.send_task(lab.tasks.add.name, args=(1, 2), kwargs={"currency": "EUR"}, queue=lab.queue("plain"))
    return error_name(finished(lab, r))
