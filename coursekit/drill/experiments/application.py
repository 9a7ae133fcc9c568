"""Chapter 13: Celery inside a real application (transactions, deploys, rate limits, revokes, serializers, async
code, eager mode). Experiments of the drill's own, on its own tasks."""
from __future__ import annotations

import shutil
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
        shutil.rmtree(folder, ignore_errors=True)
    if seen == 0 and after == 1:
        return "no row: the transaction had not committed"
    return f"{seen} row(s) before the commit, {after} after"


def rate_limit_scope(lab: DrillLab) -> str:
    """`limited` allows one start every 2 s. Two tasks go to worker a, one to worker b, at once: does b wait
    for a's bucket?"""
    a, b = lab.worker("pair_a", "pair_b")
    ledger = lab.ledger()
    for key, worker in ((0, "pair_a"), (1, "pair_a"), (2, "pair_b")):
        lab.tasks.limited.apply_async((ledger.name, key), queue=lab.own_queue(worker))
    lab.wait_for(lambda: len(ledger) >= 3)
    owner = {p: "a" for p in a.children} | {p: "b" for p in b.children}
    starts = {e["key"]: (e["at"], owner.get(e["worker"], "?")) for e in ledger.entries()}
    if len(starts) < 3 or [starts[k][1] for k in (0, 1, 2)] != ["a", "a", "b"]:
        return f"unexpected starts: {starts}"
    within = starts[1][0] - starts[0][0]
    across = abs(starts[2][0] - starts[0][0])
    if within >= 1.5 and across < 1.0:
        return "each worker on its own"
    if within >= 1.5 and across >= 1.5:
        return "across the whole cluster"
    return f"a's two starts {within:.1f} s apart, b's {across:.1f} s after a's first"


def revoke_after_restart(lab: DrillLab) -> str:
    """Revoke a task still waiting in a backlog, then restart the only worker (no --statedb, no mingle): does its
    body run? The ledger says; the result state does not (5.7 stores REVOKED at the revoke, and it may stay).
    The first worker reads another queue, so the task surely waits in Redis, not in its hands, when revoked."""
    from ... import queues

    backlog, ledger = lab.private_queue(), lab.ledger()
    first = lab.fresh("plain", queue=lab.private_queue())
    r = lab.tasks.mark.apply_async((ledger.name, "revoked-job"), queue=backlog)
    control = lab.app.control
    control.revoke(r.id, destination=[first.nodename])
    inspect = control.inspect(destination=[first.nodename], timeout=2)
    known = lab.wait_for(lambda: r.id in (inspect.revoked() or {}).get(first.nodename, []))
    first.stop()  # a deploy: warm shutdown, then a new worker, which reads the backlog
    if not known or queues.depth(lab.app, backlog) != 1:
        return "the revoke did not reach the worker, or the task left the backlog: nothing to test"
    second = lab.fresh("plain", queue=backlog)
    try:
        ran = lab.wait_for(lambda: len(ledger) >= 1)
    finally:
        second.kill()
    return "yes: the new worker runs it" if ran else "no: a revoked task never runs"


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
