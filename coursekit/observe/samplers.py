"""What the recorder samples at a fixed interval, besides events: the depth of each queue on the broker (on Redis,
of each priority list too), and the memory (RSS) of every worker process on this machine. Each sampler returns
rows for a Recording's samples."""
from __future__ import annotations

import socket

import psutil

from .. import rabbit


def redis_lists(channel, queue: str) -> list[tuple[int, int]]:
    """(priority step, messages) for each list that holds `queue` on Redis: kombu keeps one list per step of
    `priority_steps` (default 0, 3, 6, 9), named `queue` for step 0 and `queue + sep + step` for the others.
    One transaction, so the lists are counted at the same instant."""
    steps = list(channel.priority_steps)
    with channel.conn_or_acquire() as client:  # the channel's client adds the namespace prefix itself
        with client.pipeline() as pipe:
            for step in steps:
                pipe.llen(channel._q_for_pri(queue, step))
            sizes = pipe.execute()
    return [(step, int(size)) for step, size in zip(steps, sizes)]


def queue_depths(conn, queues: list[str], now: float) -> tuple[list[tuple], list[tuple]]:
    """Two sets of rows. (t, queue, depth, unacked) for each queue: on Redis the depth counts every priority list,
    and `unacked` is the size of the hash of delivered, unacknowledged messages; on RabbitMQ it is None. And, on
    Redis only, (t, queue, priority step, depth) for each priority list of each queue."""
    if conn.transport.driver_type != "redis":
        return [(now, queue, rabbit.ready(conn, queue), None) for queue in queues], []
    channel = conn.default_channel
    unacked = int(channel.client.hlen("unacked"))
    totals, lists = [], []
    for queue in queues:
        per_list = redis_lists(channel, queue)
        totals.append((now, queue, sum(depth for _, depth in per_list), unacked))
        lists += [(now, queue, step, depth) for step, depth in per_list]
    return totals, lists


def worker_memory(mains: dict[str, int], now: float) -> list[tuple]:
    """(t, node, pid, role, rss) for each worker's main process (`mains`: node name -> pid) and its pool
    children, so a recycled or killed child appears as a new pid."""
    host = socket.gethostname()
    rows = []
    for node, pid in mains.items():
        if not node.endswith("@" + host):
            continue  # another machine's worker: its memory is not ours to read
        try:
            main = psutil.Process(pid)
            rows.append((now, node, pid, "main", main.memory_info().rss))
            for child in main.children():
                rows.append((now, node, child.pid, "child", child.memory_info().rss))
        except psutil.Error:
            continue
    return rows
