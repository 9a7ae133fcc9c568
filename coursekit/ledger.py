"""A side-effect ledger: the course's witness of what tasks actually did.

A task that "charges a card" or "sends an e-mail" writes one entry here at the moment of its side effect. A lesson
or a check then counts entries per business key: a key with no entry was lost, a key with two ran twice. The
ledger is a Redis list in the course namespace, on the course broker, so it survives the worker that wrote it (a
SIGKILL included) and is counted by whoever reads it, never by the lesson's own bookkeeping.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable

import redis

from . import broker, namespace

_clients: dict[tuple[int, str], redis.Redis] = {}


def _client(url: str | None) -> redis.Redis:
    """One client per process and URL; a forked pool child gets its own instead of sharing the parent's socket."""
    key = (os.getpid(), url or "")
    if key not in _clients and not url:  # the course broker, looked up once per process
        url = broker.current().url
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return _clients[key]


def client(url: str | None = None) -> redis.Redis:
    """The Redis client ledgers use (the course broker unless `url`), for a lab that keeps its own keys beside
    its ledger, such as an idempotent task's business keys."""
    return _client(url)


class Ledger:
    """The ledger `name`, e.g. Ledger("payments"). Entries are dicts: key, pid, at, plus what the writer adds."""

    def __init__(self, name: str, url: str | None = None):
        self.name = name
        self.url = url
        self.redis_key = f"{namespace.prefix()}ledger:{name}"

    def write(self, key, **extra) -> None:
        """Record one side effect for business key `key` (call it where the effect happens, inside the task)."""
        entry = {"key": key, "pid": os.getpid(), "at": time.time(), **extra}
        _client(self.url).rpush(self.redis_key, json.dumps(entry))

    def entries(self, start: int = 0) -> list[dict]:
        """The entries in the order they were written, from the `start`-th on (a poller reads only what is new)."""
        return [json.loads(raw) for raw in _client(self.url).lrange(self.redis_key, start, -1)]

    def counts(self) -> Counter:
        """How many times each key's side effect happened."""
        return Counter(entry["key"] for entry in self.entries())

    def tally(self, expected: Iterable) -> dict:
        """Against the keys that should each have happened once: which were done, lost and duplicated."""
        counts, expected = self.counts(), list(expected)
        return {
            "expected": len(expected),
            "done": sum(1 for key in expected if counts[key] >= 1),
            "lost": [key for key in expected if counts[key] == 0],
            "duplicated": {key: n for key, n in counts.items() if n > 1},
            "unexpected": sorted(set(counts) - set(expected), key=str),
        }

    def frame(self):
        """The entries as a pandas DataFrame (columns key, pid, at, ...), in the order they were written."""
        import pandas as pd

        return pd.DataFrame(self.entries())

    def clear(self) -> None:
        _client(self.url).delete(self.redis_key)

    def __len__(self) -> int:
        return _client(self.url).llen(self.redis_key)

    def __repr__(self) -> str:
        return f"<Ledger {self.name!r}: {len(self)} entries at {self.redis_key}>"
