"""How many messages wait in a queue, counted the way the broker really holds them.

On Redis one queue is several lists (one per priority step) and `LLEN celery` counts only one of them;
messages a worker has taken but not acknowledged sit in the `unacked` hash instead.
"""
from __future__ import annotations

import json
import time

from celery import Celery

from . import namespace, rabbit
from .errors import CourseError


def depth(app: Celery, queue: str | None = None) -> int:
    """Messages waiting in `queue` (default: the app's default queue), every priority included."""
    name = queue or app.conf.task_default_queue
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        if conn.transport.driver_type == "redis":
            # kombu 5.7's passive queue_declare checks EXISTS without the global key prefix and so reports
            # a prefixed queue as missing; _size sums LLEN over every priority list, prefix applied.
            return int(channel._size(name))
        return rabbit.ready(conn, name)  # 0 when never declared: nothing was ever sent to it


def unacked(app: Celery) -> int:
    """Messages delivered to a worker and not yet acknowledged (Redis only; RabbitMQ counts them itself)."""
    with app.connection_for_read() as conn:
        if conn.transport.driver_type != "redis":
            raise ValueError("unacked() reads the Redis transport's `unacked` hash")
        client = conn.default_channel.client
        return int(client.hlen("unacked"))  # the channel's client adds the namespace prefix itself


def held(app: Celery, queue: str | None = None) -> int:
    """Messages of `queue` (default: the app's default queue) that a worker holds unacknowledged on Redis: reserved
    by prefetch, or waiting for their eta or countdown. kombu keeps each in the `unacked` hash as
    [message, exchange, routing key] until it is acknowledged; other queues' entries are not counted."""
    return len(_held_tags(app, queue))


def drop_held(app: Celery, queue: str | None = None, *, task_ids=None) -> int:
    """Delete the `unacked` entries of `queue` (default: the app's default queue), or, given `task_ids`, those of
    these tasks whatever their queue; return how many. They are what a worker killed or a kernel restarted
    mid-lesson left held, which the next worker to start would restore and count once `visibility_timeout` is up.
    Call it before the queue's worker starts, not while one holds them."""
    import redis

    tags = _held_tags(app, queue, task_ids)
    if not tags:
        return 0
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        deleted = client.hdel(f"{prefix}unacked", *tags)  # a worker may have acked some since they were listed
        client.zrem(f"{prefix}unacked_index", *tags)
    return deleted


def _held_tags(app: Celery, queue: str | None, task_ids=None) -> list[bytes]:
    """The delivery tags of the entries in the Redis transport's `unacked` hash that are `queue`'s, or, given
    `task_ids`, these tasks'. kombu keeps each entry as [message, exchange, routing key]."""
    import redis

    name, ids = queue or app.conf.task_default_queue, None if task_ids is None else set(task_ids)
    if rabbit.is_amqp(app):
        raise ValueError("the `unacked` hash is the Redis transport's: RabbitMQ keeps unacknowledged messages itself")
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    tags = {}  # HSCAN may return an entry twice while Redis rehashes the hash: each tag counts once
    with redis.Redis.from_url(str(app.conf.broker_url)) as client:  # HSCAN: kombu's client would not prefix it
        for tag, payload in client.hscan_iter(f"{prefix}unacked"):
            try:
                entry = json.loads(payload)
                ours = entry[2] == name if ids is None else entry[0].get("headers", {}).get("id") in ids
            except (ValueError, IndexError, TypeError, AttributeError):
                continue
            if ours:
                tags[tag] = True
    return list(tags)


def key_of(app: Celery, queue: str | None = None) -> str:
    """The Redis key that holds `queue`'s highest-priority messages, as `redis-cli` would name it."""
    return f"{namespace.prefix()}{queue or app.conf.task_default_queue}"


def purge(app: Celery, queue: str | None = None) -> int:
    """Delete the messages waiting in this app's queue (every priority list) and return how many.
    Only that queue: other lessons' queues and a learner's own keys are untouched."""
    name = queue or app.conf.task_default_queue
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(name) or 0)


def priority_lists(app: Celery, queue: str | None = None) -> list[dict]:
    """What each Redis list of `queue` holds now, read from the broker itself, one dict per priority list:
    `key` (as `redis-cli` names it, namespace included), `step` (the lowest priority it holds), and the messages
    it holds in the order a worker will take them (oldest first): their task arguments (`argsrepr`) and the
    `priority` stored in each message."""
    import redis

    name = queue or app.conf.task_default_queue
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    with app.connection_for_read() as conn:
        if conn.transport.driver_type != "redis":
            raise CourseError(f"{app.main} is on {conn.transport.driver_type}, where a queue is one queue, not lists",
                              fix="read a RabbitMQ queue's count with queues.depth(app, name)")
        channel = conn.default_channel
        keys = [(step, prefix + channel._q_for_pri(name, step)) for step in channel.priority_steps]
    out = []
    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        for step, key in keys:
            held = [json.loads(raw) for raw in reversed(client.lrange(key, 0, -1))]  # LPUSH, BRPOP: oldest last
            out.append({"key": key, "step": step, "messages": len(held),
                        "args": [m.get("headers", {}).get("argsrepr") for m in held],
                        "priority": [m.get("properties", {}).get("priority") for m in held]})
    return out


def wait_for(app: Celery, depths: dict[str, int], timeout: float = 10.0) -> None:
    """Return once each queue holds exactly the messages given (queue name -> count), e.g. once a worker has
    taken what it will take; a clear error naming the counts after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        now = {name: depth(app, name) for name in depths}
        if now == depths:
            return
        if time.monotonic() > deadline:
            raise CourseError(f"after {timeout:.0f} s the queues hold {now}, not {depths}",
                              fix="check that a worker reads each queue (`coursekit status`) and nothing else does")
        time.sleep(0.02)
