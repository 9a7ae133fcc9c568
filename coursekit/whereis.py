"""Where a task that looks lost can be, read from the broker (chapter 06). `inspect` asks the workers what they
hold; these read what no worker answers for: the messages waiting in the namespace's queues, and those in the
`unacked` hash (taken by a worker, not acknowledged: they come back after `visibility_timeout`)."""
from __future__ import annotations

import json

import redis

from . import namespace
from .killlab import parked


def waiting(app) -> dict[str, str]:
    """Task id -> the queue (its Redis list, as kombu names it without the namespace) of every message waiting in a
    list of this namespace: a queue no worker reads, or one whose workers are all busy."""
    prefix = namespace.prefix()
    out = {}
    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            if client.type(key) != b"list":
                continue
            for raw in client.lrange(key, 0, -1):
                try:
                    task_id = json.loads(raw)["headers"]["id"]
                except (ValueError, KeyError, TypeError):
                    continue  # a list of the course's own (a ledger), not a queue
                out[task_id] = key.decode()[len(prefix):]
    return out


def held(app) -> dict[str, str]:
    """Task id -> the queue it came from, for every message held unacknowledged (`unacked`)."""
    return parked(app)
