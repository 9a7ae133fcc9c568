"""Chapter 03: how tasks are shared out, concurrency and prefetch."""
from __future__ import annotations

import os

import psutil

from ... import broker, probe
from ..lab import DrillLab


def _stats(lab: DrillLab, name: str) -> dict:
    w = lab.worker(name)
    reply = lab.wait_for(lambda: (lab.app.control.inspect(destination=[w.nodename], timeout=2).stats() or {}))
    return reply.get(w.nodename, {})


def default_concurrency(lab: DrillLab) -> str:
    processes = _stats(lab, "auto").get("pool", {}).get("max-concurrency")
    if processes == os.cpu_count():
        return "os.cpu_count() of the machine"
    return f"{processes} processes on a machine of {os.cpu_count()} CPUs"


def prefetch_count(lab: DrillLab) -> int:
    return _stats(lab, "plain").get("prefetch_count", -1)


def reserved_beside_one_running(lab: DrillLab) -> int:
    w = lab.worker("m1")
    ledger = lab.ledger()
    for i in range(3):
        lab.tasks.nap.apply_async((0.8, ledger.name, i), queue=lab.queue("m1"))
    lab.wait_for(lambda: len(ledger) >= 1)
    inspect = lab.app.control.inspect(destination=[w.nodename], timeout=2)

    def reserved() -> int:
        return len((inspect.reserved() or {}).get(w.nodename, []))

    lab.wait_for(reserved, 3)  # the prefetch of the next one follows the first's start by a moment
    lab.wait_for(lambda: False, 0.2)  # and a second one, had the slot been bigger, would have come with it
    return reserved()


def competing_consumers(lab: DrillLab) -> str:
    lab.worker("pair_a", "pair_b")
    ledger = lab.ledger()
    results = [lab.tasks.mark.apply_async((ledger.name, i), queue=lab.queue("pair_a")) for i in range(8)]
    for r in results:
        r.get(timeout=8)
    runs = ledger.counts()
    workers = {e["worker"] for e in ledger.entries()}
    if len(runs) == 8 and set(runs.values()) == {1}:
        return "each task runs once, on one of the workers"
    return f"{sum(runs.values())} runs of {len(runs)} tasks on {len(workers)} workers"


def same_host_link(lab: DrillLab) -> str:
    a, b = lab.worker("pair_a", "pair_b")
    port = probe.port_of(broker.current().url) or 6379

    def endpoints(w):
        procs = [psutil.Process(w.pid), *[psutil.Process(c) for c in w.children]]
        return [c for p in procs for c in p.net_connections(kind="inet") if c.raddr]

    ea, eb = endpoints(a), endpoints(b)
    direct = {c.laddr.port for c in ea} & {c.raddr.port for c in eb}
    others = {c.raddr.port for c in ea + eb} - {port}
    if not direct and not others and ea and eb:
        return "only through the broker, as on two hosts"
    return f"{len(direct)} direct link(s), other ports {sorted(others)}"
