"""Chapter 08: recycling pool processes, and what results cost."""
from __future__ import annotations

from ... import queues
from ...ledger import client
from ..lab import DrillLab
from .common import result_key, stored


def pids_with_max_tasks(lab: DrillLab) -> int:
    lab.worker("recycle")
    pids = [lab.tasks.pid.apply_async(queue=lab.queue("recycle")).get(timeout=8) for _ in range(4)]
    return len(set(pids))


def memory_limit_unit(lab: DrillLab) -> str:
    """`--max-memory-per-child 100000` (see lab.CONFIGS): small tasks keep their process, an 80 MB one does not."""
    lab.worker("memory")
    q = lab.queue("memory")
    small = [lab.tasks.hold_memory.apply_async((1,), queue=q).get(timeout=8) for _ in range(2)]
    big = lab.tasks.hold_memory.apply_async((80,), queue=q).get(timeout=8)
    after = lab.tasks.pid.apply_async(queue=q).get(timeout=8)
    if small[0] != small[1]:
        return "bytes (a process is replaced after every task)"
    return "KiB" if after != big else "MB or more (never replaced)"


def results_after_purge(lab: DrillLab) -> str:
    lab.worker("plain")
    r = lab.tasks.add.apply_async((1, 1), queue=lab.queue("plain"))
    r.get(timeout=8)
    lab.tasks.add.apply_async((2, 2))  # a message waiting in the app's default queue, which no worker reads
    purged = lab.app.control.purge()  # what `celery purge` calls
    left = queues.depth(lab.app)
    if purged >= 1 and left == 0:
        return "kept" if stored(lab, r.id) else "deleted"
    return f"purge removed {purged}, {left} still waiting"


def result_ttl(lab: DrillLab) -> int:
    lab.worker("plain")
    r = lab.tasks.add.apply_async((1, 1), queue=lab.queue("plain"))
    r.get(timeout=8)
    return int(client().ttl(result_key(lab, r.id)))


def keys_with_ignore_result(lab: DrillLab) -> int:
    lab.worker("plain")
    ledger = lab.ledger()
    ignored = lab.tasks.mark.apply_async((ledger.name, "quiet"), queue=lab.queue("plain"), ignore_result=True)
    # The next task on this one-process worker starts only once the first has finished, storage included.
    lab.tasks.add.apply_async((1, 1), queue=lab.queue("plain")).get(timeout=8)
    return int(len(ledger) == 1 and stored(lab, ignored.id)) if len(ledger) == 1 else -1
