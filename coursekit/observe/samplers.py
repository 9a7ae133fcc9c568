"""What the recorder samples at a fixed interval, besides events: the depth of each queue on the broker (on Redis,
of each priority list too), and the memory (RSS) and CPU use of every worker process on this machine. Each sampler
returns rows for a Recording's samples."""
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


def worker_usage(mains: dict[str, int], clock, last: dict) -> tuple[list[tuple], list[tuple]]:
    """Two sets of rows. (t, node, pid, role, rss) for each worker's main process (`mains`: node name -> pid) and
    its pool children, so a recycled or killed child appears as a new pid. And (t, node, cpu_s, cores): `cpu_s`
    the CPU time the worker's processes (main and children, every thread of each) used since the previous call,
    `cores` that over the seconds between the two readings, so 1.0 is one core's worth.

    `clock()` gives `t`, read once a worker's processes have been read: a sampler thread that waited before them
    stretches no interval. `last` holds what the previous call read (pid -> (t, CPU seconds)); it is updated here.
    A child born since then counts from zero; a process that died since then drops out (its last moments are lost,
    a few ms); a worker seen for the first time has no CPU row yet."""
    host = socket.gethostname()
    memory, cpu, seen = [], [], {}
    for node, pid in mains.items():
        if not node.endswith("@" + host):
            continue  # another machine's worker: its processes are not ours to read
        try:
            main = psutil.Process(pid)
            processes = [(main, "main")] + [(child, "child") for child in main.children()]
        except psutil.Error:
            continue
        read = []
        for proc, role in processes:
            try:
                with proc.oneshot():
                    rss, times = proc.memory_info().rss, proc.cpu_times()
            except psutil.Error:
                continue
            read.append((proc.pid, role, rss, times.user + times.system))  # children_*: reaped ones only
        now = clock()
        used, since = 0.0, None
        for one, role, rss, seconds in read:
            memory.append((now, node, one, role, rss))
            before = last.get(one)
            if before is None and role == "child" and pid in last:
                before = (last[pid][0], 0.0)  # a child born since the main process was last read: all its CPU is new
            if before is not None:
                used += max(0.0, seconds - before[1])
                since = before[0]
            seen[one] = (now, seconds)
        if since is not None and now > since:
            cpu.append((now, node, round(used, 3), round(used / (now - since), 3)))
    last.clear()  # the processes gone since are forgotten: a pid the OS reuses starts afresh
    last.update(seen)
    return memory, cpu
