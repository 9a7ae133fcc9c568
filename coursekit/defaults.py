"""Every default coursekit uses, in one place, each with the reason for its value."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Defaults:
    namespace: str = "celerylab:"
    """Prefix of every Redis key and RabbitMQ name the course creates. Overridden by COURSEKIT_NAMESPACE.
    A learner's own keys on the same broker never carry it, so a reset cannot touch them."""

    redis_port: int = 6379
    """Where a local or compose Redis answers."""

    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    """Where a local or compose RabbitMQ answers."""

    probe_timeout_s: float = 1.0
    """How long a reachability probe waits: long enough for loopback, short enough that a dead URL fails fast."""

    embedded_ready_timeout_s: float = 5.0
    """How long an embedded redis-server may take to answer PING (it takes tens of milliseconds)."""

    worker_ready_timeout_s: float = 30.0
    """Bound on `Worker.start()`: a worker on 2 cores answers its first ping in about 1-2 s."""

    worker_stop_timeout_s: float = 10.0
    """Warm shutdown waits this long for running tasks before the process group is SIGKILLed."""

    ping_timeout_s: float = 0.1
    """The first readiness ping's wait; `start()` pings again, each wait 1.5 times the last (at most 1 s), until
    `worker_ready_timeout_s`."""

    owner_poll_s: float = 0.5
    """How often a worker checks that the process which started it is still alive."""

    flower_ready_timeout_s: float = 30.0
    """Bound on starting Flower: on 2 cores it answers /healthcheck in about 1-2 s."""

    flower_stop_timeout_s: float = 5.0
    """Flower exits within a second of SIGTERM; after this its process group is SIGKILLed."""

    result_timeout_s: float = 10.0
    """`ck.get()` waits this long for a result before it diagnoses why none came."""

    cell_timeout_s: int = 120
    """`coursekit run`: the longest one notebook cell may run."""


DEFAULTS = Defaults()
