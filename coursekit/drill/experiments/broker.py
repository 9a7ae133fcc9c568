"""Chapter 10: what the Redis transport does with connection settings, and where waiting work really sits."""
from __future__ import annotations

from ... import queues
from ...app import make_app
from ..lab import DrillLab


def heartbeat_on_redis(lab: DrillLab) -> str:
    app = make_app("drillbeat", broker_heartbeat=2)
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        return "the transport sends heartbeats" if conn.supports_heartbeats else "ignored: no heartbeats on Redis"


def redis_max_connections_target(lab: DrillLab) -> str:
    app = make_app("drillpool", redis_max_connections=3)
    backend = app.backend.client.connection_pool.max_connections
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        broker = conn.default_channel.client.connection_pool.max_connections
    if backend == 3 and broker != 3:
        return "the result backend"
    if broker == 3 and backend != 3:
        return "the broker"
    return f"backend pool {backend}, broker pool {broker}"


def held_while_queue_looks_empty(lab: DrillLab) -> int:
    """Default worker (-c 1, multiplier 4): one running, more sent. Once LLEN says 0, how many sit in `unacked`?"""
    w = lab.worker("plain")
    ledger, q = lab.ledger(), lab.queue("plain")
    for i in range(4):  # the first runs long enough to look at the others while it runs
        lab.tasks.nap.apply_async((1.5 if i == 0 else 0.1, ledger.name, i), queue=q)
    lab.wait_for(lambda: len(ledger) >= 1 and queues.depth(lab.app, q) == 0)
    inspect = lab.app.control.inspect(destination=[w.nodename], timeout=2)
    lab.wait_for(lambda: len((inspect.reserved() or {}).get(w.nodename, [])) >= 3, 2)
    held = queues.held(lab.app, q)
    lab.wait_for(lambda: len(ledger) >= 4)
    return held
