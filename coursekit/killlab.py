"""The kill lab of chapter 06: a batch of payments, a worker killed three times while it works through them, and
the ledger's count of what really happened. The lesson, its tests and check 06.no_loss all run it.

The three kills, always in this order:
1. `before`: a pool child SIGKILLed while it runs a slow payment that has begun but not yet charged;
2. `worker`: the whole worker SIGKILLed (main process and children, as an OOM killer or `kill -9` of a deploy
   does) just after the second half of the batch has begun (it is sent once the first kill has been noticed, so
   that the worker holds some of it); a new worker takes over at once, as a supervisor would;
3. `after`: a pool child SIGKILLed while it runs a slow payment that has charged but not yet returned.
The slow payments are the two that the child kills aim at: a kill lands in the half the lab means, whatever the
machine's load. Every number comes from the ledger (what was charged) and the recorder (what the worker did), never
from the lab's own bookkeeping: the lab only notes when it killed what.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .ledger import Ledger
from .labs.losing import started

SLOW_S = 1.2
"""How long the two aimed-at payments take (see `share`: each kill has 1.08 s of it to land in)."""
SETTLE_S = 8.0
"""How long the whole-worker kill waits for the worker to have dealt with the child kill before it (a pool notices a
dead process at its check, every 5 s)."""
FAST_S = 0.02
PLAN = (("before", 0.2), ("worker", 0.5), ("after", 1.0))
"""Each kill and the share of the batch at which it comes. The slow payments sit at the child kills' shares: the first
in the first half of the batch, which is sent at the start; the last is the batch's last payment. The second half is
sent once the worker has noticed the first kill, and the whole worker is killed when two of it are charged."""


@dataclass
class Kill:
    kind: str
    """'before' / 'after' (a pool child, before or after its payment's charge) or 'worker' (the whole worker)."""
    at: float
    """Unix time of the SIGKILL."""
    pid: int
    order: str | None = None
    """The payment the child ran when it was killed (child kills only)."""


@dataclass
class Storm:
    orders: list[str]
    kills: list[Kill] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0
    tally: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """What kept a kill from landing where the plan meant it (a busy machine), said rather than hidden."""
    skipped: list[str] = field(default_factory=list)
    """Kills that did not happen because the payment they aimed at had been lost by an earlier kill."""

    def describe(self) -> str:
        t = self.tally
        return (f"{t['done']}/{t['expected']} payments charged, {len(t['lost'])} lost, "
                f"{len(t['duplicated'])} charged more than once; kills: "
                + ", ".join(f"{k.kind} at {k.at - self.began:.1f} s" for k in self.kills))


def orders(n: int, tag: str) -> list[tuple[str, float]]:
    """`n` payments (order id, seconds), two of them slow: those the child kills aim at."""
    slow = {min(int(share * n), n - 1) for kind, share in PLAN if kind != "worker"}
    return [(f"{tag}-{i:03d}", SLOW_S if i in slow else FAST_S) for i in range(n)]


def share(batch: list[tuple[str, float]], order: str) -> float:
    """How far into its run `order` charges: the payment the 'before' kill aims at late (90 %), the one the 'after'
    kill aims at early (10 %), the rest half way. Each child kill has 90 % of a slow payment to land in: with half,
    CI once took longer than the half between seeing a payment begin and killing its process."""
    slow = [o for o, s in batch if s == SLOW_S]
    return {slow[0]: 0.9, slow[-1]: 0.1}.get(order, 0.5)


class _Tail:
    """A ledger read as it grows: each poll fetches only the entries written since the last (the storm polls every
    10 ms; reading all 200 each time cost more CPU than the workers it watched, on a machine already busy)."""

    def __init__(self, book: Ledger):
        self.book, self.seen = book, []

    def entries(self) -> list[dict]:
        self.seen += self.book.entries(start=len(self.seen))
        return self.seen


def _wait(condition: Callable[[], object], until: float, step: float = 0.01):
    while time.monotonic() < until:
        found = condition()
        if found:
            return found
        time.sleep(step)
    return None


def storm(start_worker: Callable[[], object], send: Callable[[str, float], object], ledger: Ledger,
          batch: list[tuple[str, float]], budget_s: float = 40.0, held: Callable[[], int] = lambda: 0,
          patience_s: float = 2.0, on_worker: Callable[[object], None] | None = None,
          waiting: Callable[[], int] = lambda: 0) -> Storm:
    """Run the batch on workers from `start_worker()` (a started `Worker`, pool of 2 or more), killing as PLAN says;
    `send(order, seconds)` publishes one payment and returns its AsyncResult. Return once nothing more happens: no
    charge and no run begun for half a second, and no message left anywhere through that half second (`held()`:
    messages waiting in the queue or held unacknowledged), or no charge for `patience_s` while messages stay held
    (they come back only after a visibility timeout the lab does not wait for); at the latest after `budget_s`. So
    a payment charged twice is counted twice. `on_worker` hears of every worker started, so that its owner can reap
    it. `waiting()`: messages in the queue a live worker will take; patience does not run out on them (CI saw a
    loaded standby take over 1 s to start reading, and a lab with the defaults' 1 s patience end before it did)."""
    slow = [o for o, s in batch if s == SLOW_S]
    run = Storm(orders=[o for o, _ in batch])
    worker = start_worker()
    on_worker and on_worker(worker)
    run.began = time.time()
    deadline = time.monotonic() + budget_s
    half = len(batch) // 2
    sent = {}  # order -> what send() returned: the AsyncResult (or id) of its message
    for order, seconds in batch[:half]:
        sent[order] = send(order, seconds)
    struck: str | None = None  # the payment the 'before' kill hit
    begun, charged = _Tail(started(ledger.name)), _Tail(ledger)
    aims = iter(slow)
    still = {"n": -1, "since": time.monotonic()}

    def calm() -> float:
        """Seconds since the ledger last grew."""
        n = len(ledger)
        if n != still["n"]:
            still.update(n=n, since=time.monotonic())
        return time.monotonic() - still["since"]

    for kind, share in PLAN:
        if kind == "worker":
            # The child kill's task must be dealt with first (failed and acked, rejected, retried or run again):
            # killing the whole worker before that would leave its message in `unacked`, and bring it back whatever
            # the settings (CI saw an answer that drops it pass so).
            if struck is not None and not _wait(lambda: _settled(sent.get(struck), struck, begun),
                                                min(deadline, time.monotonic() + SETTLE_S), step=0.05):
                run.problems.append(f"the worker had not dealt with the killed payment {struck} within {SETTLE_S:g} s "
                                    "when the whole-worker kill was due")
            # the second half goes out now, once the child kill has been noticed: the worker is busy with it, and
            # holds some of it prefetched, when the whole-worker kill comes after two of it are charged
            for order, seconds in batch[half:]:
                sent[order] = send(order, seconds)
            reached = _wait(lambda: len(ledger) >= half + 2, deadline)
            if not reached:
                run.problems.append(f"only {len(ledger)} charges before the whole-worker kill was due")
            pid = worker.pid
            worker.kill()
            run.kills.append(Kill("worker", time.time(), pid))
            worker = start_worker()
            on_worker and on_worker(worker)
            still["since"] = time.monotonic()  # a worker's boot is no silence: patience counts from its start
            continue
        order = next(aims)
        book = begun if kind == "before" else charged
        entry = _wait(lambda: next((e for e in book.entries() if e["key"] == order and e["pid"] in worker.children),
                                   None) or (calm() >= patience_s and "stalled"), deadline)
        if not isinstance(entry, dict):  # nothing more happens: an earlier kill lost it
            run.skipped.append(f"payment {order} never {'began' if kind == 'before' else 'charged'}, so its kill "
                               "did not happen")
            continue
        if entry["pid"] not in worker.children:
            run.problems.append(f"payment {order} ran in pid {entry['pid']}, no longer a pool child; no kill")
            continue
        # A run of it that charged already is a problem only if no run of it is still before its charge: with a short
        # visibility_timeout a payment can be delivered twice before the first kill (CI saw it), and the kill then
        # lands in the second run, before that run's charge, as planned.
        if kind == "before" and sum(e["key"] == order for e in charged.entries()) >= \
                sum(e["key"] == order for e in begun.entries()):
            run.problems.append(f"payment {order} had already charged when its 'before' kill came")
        size = len(worker.children)
        worker.kill_child(entry["pid"])
        run.kills.append(Kill(kind, time.time(), entry["pid"], order))
        if kind == "before":
            struck = order
        # the next kill waits until the worker has noticed this one (the dead child reaped, a new one in its place):
        # a whole-worker kill before that would hide what the child kill did to its task
        if not _wait(lambda: _replaced(worker, entry["pid"], size), deadline, step=0.05):
            run.problems.append(f"the worker did not replace its killed child {entry['pid']}")
    empty = {"since": None}  # when held() was last seen turning to 0

    def finished() -> bool:
        """Nothing charged for 0.5 s, no run begun for 0.5 s, and nothing held through the last 0.5 s (one reading is
        not enough: a message a worker has just popped is in neither its queue nor `unacked` for an instant); or
        nothing charged for `patience_s` while messages stay held."""
        quiet, now = calm(), time.monotonic()
        if held():
            empty["since"] = None
            return quiet >= patience_s and not waiting()
        empty["since"] = empty["since"] or now
        starts = begun.entries()
        last_start = starts[-1]["at"] if starts else 0.0  # written in order
        return quiet >= 0.5 and now - empty["since"] >= 0.5 and time.time() - last_start >= 0.5

    _wait(finished, deadline, step=0.05)
    run.ended = time.time()
    run.tally = ledger.tally(run.orders)
    run.worker = worker
    return run


def _settled(result, order: str, begun: _Tail) -> bool:
    """True once the worker has dealt with the payment `order` whose process was killed: a state stored (FAILURE,
    RETRY, SUCCESS) or a second run begun. `result` is what send() returned (an AsyncResult, or None)."""
    if sum(entry["key"] == order for entry in begun.entries()) >= 2:
        return True
    try:
        return getattr(result, "state", "PENDING") not in ("PENDING", "STARTED")
    except Exception:  # no result backend (a learner's settings): only a second run tells, or the time bound
        return False


def _replaced(worker, pid: int, size: int) -> bool:
    """True once `worker`'s pool is back to `size` children, none of them `pid`."""
    kids = worker.children
    return pid not in kids and len(kids) >= size


def began(ledger: str, order: str, timeout: float = 10.0) -> dict:
    """The start entry (key, pid, at) of payment `order` in the ledger `ledger`, once it has begun."""
    book = started(ledger)
    entry = _wait(lambda: next((e for e in book.entries() if e["key"] == order), None), time.monotonic() + timeout)
    if entry is None:
        from .errors import CourseError

        raise CourseError(f"payment {order} did not begin within {timeout:.0f} s",
                          fix="check that a worker reads its queue (`coursekit status`)")
    return entry


def _unacked(app):
    """A plain client on the app's broker, and the names of the `unacked` hash and its index in this namespace."""
    import redis

    from . import namespace

    prefix = namespace.prefix()
    return redis.Redis.from_url(str(app.conf.broker_url)), f"{prefix}unacked", f"{prefix}unacked_index"


def stuck_lock(app, look_s: float = 0.3) -> int | None:
    """Seconds left on kombu's restore lock (`unacked_mutex`, this namespace's) if it is still taken after `look_s`,
    else None. A worker takes it for the few milliseconds of each sweep of `unacked`; one SIGKILLed during a sweep
    leaves it taken for `unacked_mutex_expire` (kombu's default: 300 s), and until then no worker restores anything."""
    client, unacked, _ = _unacked(app)
    lock = f"{unacked}_mutex"
    with client:
        if not client.exists(lock):
            return None
        time.sleep(look_s)
        ttl = client.ttl(lock)
    return ttl if ttl > 0 else None


def free_lock(app) -> bool:
    """Delete a restore lock left taken by a worker the course killed (see stuck_lock), so that an experiment starts
    with restores working; True if there was one. Only this namespace's lock, and only one still taken after 0.3 s:
    a live worker holds it for milliseconds."""
    if stuck_lock(app) is None:
        return False
    client, unacked, _ = _unacked(app)
    with client:
        return bool(client.delete(f"{unacked}_mutex"))


def parked(app) -> dict[str, str]:
    """The messages held in Redis's `unacked` hash (this namespace's), as task id -> the queue each came from: taken
    by a worker and not acknowledged. kombu puts one back in its queue once it is older than `visibility_timeout`."""
    import json

    client, unacked, _ = _unacked(app)
    with client:
        return {json.loads(payload)[0]["headers"]["id"]: json.loads(payload)[2]
                for _, payload in client.hscan_iter(unacked)}


def unpark(app, task_ids) -> int:
    """Delete these tasks' messages from the `unacked` hash (and its index), so that no worker ever restores them.
    The lesson does it between experiments; in production you would let them come back."""
    import json

    wanted, dropped = set(task_ids), 0
    client, unacked, index = _unacked(app)
    with client:
        for tag, payload in client.hscan_iter(unacked):
            if json.loads(payload)[0]["headers"]["id"] in wanted:
                client.hdel(unacked, tag)
                client.zrem(index, tag)
                dropped += 1
    return dropped


RIGHT = {"task_acks_late": True, "task_reject_on_worker_lost": True,
         "broker_transport_options": {"visibility_timeout": 4, "unacked_restore_interval": 1,
                                      "unacked_restore_throttle": 1, "unacked_mutex_expire": 2}}
"""The settings under which the lab loses nothing a setting can save: a killed child's message requeued, a dead
worker's messages back from `unacked` 4 s after delivery, looked for every second. 4 s, not less: kombu restores any
message held longer than that, a live worker's too, and on a loaded machine a slow payment can be held over 3 s
(CI saw one run three times with 2 s). `unacked_mutex_expire` 2 s: a worker killed in the middle of a sweep holds the
restore lock that long instead of 300 s (see stuck_lock)."""


def vanished(app, lost, sent: dict[str, str], ledger: Ledger) -> list[str]:
    """The lost payments that never began and whose message is in no queue and not in `unacked`: taken off the queue
    by a worker's BRPOP, and gone with that worker before kombu wrote it to `unacked` (it does so only when the
    worker's event loop reads the reply). No setting brings such a message back on Redis; a worker holds at most one
    so. `sent`: order -> task id; `ledger`: the charges' ledger (its `started` twin says what began)."""
    from .whereis import waiting

    starts = started(ledger.name).counts()
    somewhere = set(waiting(app)) | set(parked(app))
    return [order for order in lost if starts[order] == 0 and sent[order] not in somewhere]


@dataclass
class LabRun:
    storm: Storm
    ledger: Ledger
    sent: dict[str, str]
    """Order -> task id of its message."""
    queue: str


def lab(label: str, config: dict, n: int = 200, patience_s: float = 3.0, queue: str | None = None) -> LabRun:
    """One run of the kill lab on `coursekit.labs.losing`: `n` payments to a worker (`-c 2`) with these Celery
    settings, killed as PLAN says (a standby worker with the same settings takes over the queue after the
    whole-worker kill), on queue `queue` (default l06.lab.<label>), charges in the ledger lesson06-<label>.
    Every worker it started is SIGKILLed before it returns; the ledger is left for the caller to read (and clear)."""
    from . import queues
    from .labs.losing import app, charge
    from .worker import Worker, start_all

    queue = queue or f"l06.lab.{label}"
    book = Ledger(f"lesson06-{label}")
    for b in (book, started(book.name)):
        b.clear()
    queues.purge(app, queue)
    free_lock(app)  # one the previous run's workers left taken when the lab killed them would stall every restore
    # Two workers boot side by side: the first reads the queue; the second, a standby, reads nothing until the first is
    # killed, then takes the queue over at once (as a restarted worker would, without waiting for another boot).
    workers = [Worker("coursekit.labs.losing", name=f"{label}{n}", queues=queue if n == 1 else f"{queue}.standby",
                      concurrency=2, config=config) for n in (1, 2)]
    lives = iter(workers)
    sent = {}
    start_all(*workers)

    def start():
        worker = next(lives)
        if worker is not workers[0]:
            until = time.monotonic() + 10
            # asked again until it answers: on a loaded machine one broadcast's reply can miss its 2 s (asking twice
            # is harmless: "already consuming")
            while not app.control.add_consumer(queue, destination=[worker.nodename], reply=True, timeout=2) \
                    and time.monotonic() < until:
                pass
        return worker

    batch = orders(n, label)

    def send(order, seconds):
        result = charge.apply_async((order, seconds, book.name, share(batch, order)), queue=queue)
        sent[order] = result.id
        return result

    def held():
        return queues.depth(app, queue) + sum(q == queue for q in parked(app).values())

    try:
        run = storm(start, send, book, batch, held=held, patience_s=patience_s,
                    waiting=lambda: queues.depth(app, queue))
    finally:
        for w in workers:
            w.kill()
    return LabRun(run, book, sent, queue)


def clean(app, run: LabRun) -> None:
    """Delete what a lab run left: its messages in `unacked` and its queue, its two ledgers."""
    from . import queues

    unpark(app, run.sent.values())
    queues.purge(app, run.queue)
    queues.purge(app, f"{run.queue}.standby")
    for b in (run.ledger, started(run.ledger.name)):
        b.clear()
