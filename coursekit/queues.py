"""How many messages wait in a queue, counted the way the broker really holds them.

On Redis one queue is several lists (one per priority step) and `LLEN celery` counts only one of them;
messages a worker has taken but not acknowledged sit in the `unacked` hash instead.
"""
from __future__ import annotations

from celery import Celery

from . import namespace


def depth(app: Celery, queue: str | None = None) -> int:
    """Messages waiting in `queue` (default: the app's default queue), every priority included."""
    name = queue or app.conf.task_default_queue
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        if conn.transport.driver_type == "redis":
            # kombu 5.7's passive queue_declare checks EXISTS without the global key prefix and so reports
            # a prefixed queue as missing; _size sums LLEN over every priority list, prefix applied.
            return int(channel._size(name))
        try:
            return channel.queue_declare(name, passive=True).message_count
        except conn.channel_errors:
            return 0  # never declared: nothing was ever sent to it


def unacked(app: Celery) -> int:
    """Messages delivered to a worker and not yet acknowledged (Redis only; RabbitMQ counts them itself)."""
    with app.connection_for_read() as conn:
        if conn.transport.driver_type != "redis":
            raise ValueError("unacked() reads the Redis transport's `unacked` hash")
        client = conn.default_channel.client
        return int(client.hlen("unacked"))  # the channel's client adds the namespace prefix itself


def key_of(app: Celery, queue: str | None = None) -> str:
    """The Redis key that holds `queue`'s highest-priority messages, as `redis-cli` would name it."""
    return f"{namespace.prefix()}{queue or app.conf.task_default_queue}"


def purge(app: Celery, queue: str | None = None) -> int:
    """Delete the messages waiting in this app's queue (every priority list) and return how many.
    Only that queue: other lessons' queues and a learner's own keys are untouched."""
    name = queue or app.conf.task_default_queue
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(name) or 0)
