"""What the recorder samples at a fixed interval, besides events: the depth of each queue on the broker, and the
memory (RSS) of every worker process on this machine. Each sampler returns rows for a Recording's samples."""
from __future__ import annotations

import socket

import psutil


def queue_depths(conn, queues: list[str], now: float) -> list[tuple]:
    """(t, queue, depth, unacked) for each queue. On Redis the depth counts every priority list, and `unacked`
    is the size of the hash of delivered, unacknowledged messages; on RabbitMQ it is None."""
    channel = conn.default_channel
    redis = conn.transport.driver_type == "redis"
    unacked = int(channel.client.hlen("unacked")) if redis else None
    rows = []
    for queue in queues:
        if redis:
            depth = int(channel._size(queue))  # every priority list, prefix applied (see queues.depth)
        else:
            try:
                depth = channel.queue_declare(queue, passive=True).message_count
            except conn.channel_errors:
                depth = 0
        rows.append((now, queue, depth, unacked))
    return rows


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
