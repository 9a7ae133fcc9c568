"""The drill's workers: one long-lived `celery worker` per configuration, started the first time an experiment asks
for it and shared by every later one, so a whole bank costs a few worker starts, not one per question.

Each configuration reads a queue of its own (`drill.<lab>.<name>`), so an experiment reaches exactly the worker it
asked for, and two drills at once (a notebook and a terminal) never serve each other's experiments. `close()` stops them all (and a `with DrillLab() as lab:` block does it for you); a worker that an experiment
must kill or restart is a `fresh()` one, never a shared one.
"""
from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable

from .. import namespace
from ..ledger import Ledger
from ..worker import Worker, start_all, stop_all

LAB = "coursekit.labs.drill"
PATIENCE_S = 8.0
"""How long an experiment waits for something a worker should do in about a second: generous for a loaded
machine, and still inside the 10 s an experiment may take."""

CONFIGS: dict[str, dict] = {
    # prefork -c 1 with every default: early ack, prefetch multiplier 4
    "plain": {},
    # prefetch multiplier 1, early ack: one message still reserved beside the running one
    "m1": {"prefetch_multiplier": 1},
    # acks_late alone, multiplier 1 (the seed's advice for lost tasks)
    "late": {"prefetch_multiplier": 1, "config": {"task_acks_late": True}},
    # acks_late + task_reject_on_worker_lost
    "reject": {"prefetch_multiplier": 1,
               "config": {"task_acks_late": True, "task_reject_on_worker_lost": True}},
    "threads": {"pool": "threads", "concurrency": 4},
    "solo": {"pool": "solo", "concurrency": None},
    "recycle": {"max_tasks_per_child": 2},
    "memory": {"max_memory_per_child": 100_000},
    # no -c at all: Celery picks the concurrency
    "auto": {"concurrency": None},
    # two workers on one queue, multiplier 1: competing consumers (each also reads a queue of its own,
    # `own_queue()`, for experiments that must give one of them a task)
    "pair_a": {"prefetch_multiplier": 1, "queue": "pair"},
    "pair_b": {"prefetch_multiplier": 1, "queue": "pair"},
}




class DrillLab:
    """Workers shared by the drill's experiments, and small helpers that every experiment needs."""

    def __init__(self):
        from .. import broker

        broker.up()
        from ..labs import drill

        self.tasks = drill
        self.app = drill.app
        self.workers: dict[str, Worker] = {}
        self.extra: list[Worker] = []
        self._ids = itertools.count(1)
        self.tag = uuid.uuid4().hex[:6]
        """In every queue name of this lab: another lab in the same namespace has queues of its own."""
        self._memo: dict[str, object] = {}
        self._keys: list[str] = []
        """Redis keys this lab's experiments made (ledgers, backlog queues): deleted when it closes."""

    # -- workers --------------------------------------------------------------------------------------
    def worker(self, *names: str) -> Worker | list[Worker]:
        """The shared worker(s) of these configurations, started (side by side) if they are not running."""
        missing = [n for n in names if n not in self.workers or not self.workers[n].running]
        if missing:
            fresh = [self._make(n) for n in missing]
            start_all(*fresh)
            self.workers.update(zip(missing, fresh))
        found = [self.workers[n] for n in names]
        return found[0] if len(found) == 1 else found

    def _make(self, name: str, **override) -> Worker:
        options = {k: v for k, v in CONFIGS[name].items() if k != "queue"} | override
        options.setdefault("concurrency", 1)
        module = options.pop("app", LAB)
        queues = list(dict.fromkeys([self.queue(name), self.own_queue(name)]))
        self._keys.extend(q for q in queues if q not in self._keys)
        return Worker(module, name=f"drill-{name}", queues=queues, **options)

    def fresh(self, name: str, queue: str | None = None, **override) -> Worker:
        """A worker of configuration `name` that this experiment owns (to kill or restart), on `queue`."""
        w = self._make(name, **override)
        if queue:
            w.queues = [queue]
        w.name = f"{w.name}-own{next(self._ids)}"
        self.extra.append(w)
        return w.start()

    def close(self) -> None:
        stop_all([*self.workers.values(), *self.extra], timeout=5)
        self.workers.clear()
        self.extra.clear()
        self._forget_keys()

    def _forget_keys(self) -> None:
        """Delete the ledgers and backlog queues (every priority list of each) the experiments made, and what a
        killed worker held of those queues: the learner's namespace keeps nothing of the drill but results,
        which expire by themselves (result_expires)."""
        from .. import queues as course_queues
        from ..ledger import client

        if not self._keys:
            return
        redis, prefix = client(), namespace.prefix()
        queues = [k for k in self._keys if k.startswith("drill.")]
        names = [f"{prefix}{k}" for k in self._keys]
        names += [f"{prefix}{q}\x06\x16{step}" for q in queues for step in (3, 6, 9)]
        names += [f"{prefix}_kombu.{kind}.{q}" for q in queues for kind in ("binding", "binding_permanent")]
        try:
            redis.unlink(*names)
            for q in queues:
                course_queues.drop_held(self.app, q)
        except Exception:  # a broker gone at the end of a drill: nothing left to clean there
            pass
        self._keys.clear()

    def __enter__(self) -> "DrillLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------------------
    def memo(self, key: str, run: Callable[[], object]):
        """One run shared by the questions that read different facts off it (e.g. an order and a queue length):
        run once per lab, then the same observation."""
        if key not in self._memo:
            self._memo[key] = run()
        return self._memo[key]

    def ledger(self) -> Ledger:
        """A ledger of this experiment's own (a name never used before), deleted when the lab closes."""
        ledger = Ledger(f"drill-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._keys.append(ledger.redis_key[len(namespace.prefix()):])
        return ledger

    def queue(self, name: str) -> str:
        """The queue a configuration's worker reads (shared by the two workers of a pair)."""
        return f"drill.{self.tag}.{CONFIGS[name].get('queue', name)}"

    def own_queue(self, name: str) -> str:
        """A queue only this configuration's worker reads (for a pair, beside the shared one)."""
        return f"drill.{self.tag}.{name}"

    def private_queue(self) -> str:
        """A queue no worker reads: what is sent there stays there (deleted by the namespace reset)."""
        name = f"drill.{self.tag}.nobody.{uuid.uuid4().hex[:8]}"
        self._keys.append(name)
        return name

    @staticmethod
    def wait_for(condition: Callable[[], object], seconds: float = PATIENCE_S, every: float = 0.05):
        """Poll until `condition()` is truthy and return its value; its last value (falsy) after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(every)

    def backlog(self, name: str) -> "_Backlog":
        """`with lab.backlog("late") as queue:` messages sent to `queue` inside the block wait there together (no
        worker reads it yet); at the end the worker of `name` starts reading it. Cheaper than starting a worker
        after sending, and sure: a worker told to stop reading its own queue may still be inside a BRPOP that
        takes the next message (kombu waits up to 1 s there)."""
        return _Backlog(self, name)


class _Backlog:
    def __init__(self, lab: DrillLab, name: str):
        self.lab, self.name = lab, name
        self.worker = lab.worker(name)
        self.queue = lab.private_queue()

    def __enter__(self) -> str:
        return self.queue

    def __exit__(self, *exc):
        reply = self.lab.wait_for(lambda: self.lab.app.control.add_consumer(
            self.queue, destination=[self.worker.nodename], reply=True, timeout=2), 6)
        if not reply:
            raise RuntimeError(f"worker {self.worker.name} did not start reading {self.queue}")
