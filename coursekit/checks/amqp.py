"""What a check needs on RabbitMQ that Redis gives for free.

Redis keeps the course's keys under a prefix, and a check purges its queue. RabbitMQ has no prefix: every queue
the course declares carries the namespace in its name, and it stays on the broker until someone deletes it. So
a check on RabbitMQ deletes its queues (and their same-named exchanges) before its experiment and after it:
nothing outlives the check, and a queue declared by an earlier check with other arguments (`x-max-priority` from a
learner's previous answer) cannot make this one fail with PRECONDITION_FAILED. Only names in the namespace are
ever deleted.

A publisher declares a queue only once per connection (kombu remembers what it declared), and this process's
connections outlive a check. So after a deletion nothing may be sent before the worker has declared the queue
again: `consume()` on RabbitMQ returns only once the worker reads the queue (`wait_for_consumer`), and a check on
RabbitMQ sends after it."""
from __future__ import annotations

from celery import Celery

import time

from .. import broker, namespace, probe
from ..exercise import Uncheckable


def url() -> str:
    """The RabbitMQ the course uses; Uncheckable, with how to start one, when none answers."""
    found = broker.rabbitmq()
    if found is None:
        raise Uncheckable("this exercise runs on RabbitMQ, and no RabbitMQ answers on 127.0.0.1:5672 (nor at "
                          "COURSEKIT_RABBITMQ_URL); nothing was judged",
                          fix="start one (`rabbitmq-server -detached`, or `docker compose -f docker/compose.yml up "
                              "-d rabbitmq`), or set COURSEKIT_RABBITMQ_URL; then check again")
    return found.url


def is_amqp(app_or_url) -> bool:
    url = app_or_url if isinstance(app_or_url, str) else str(app_or_url.conf.broker_url)
    return probe.scheme(url) in probe.AMQP_SCHEMES


def own_queues(app: Celery) -> list[str]:
    """The app's default queue and every other queue it declares whose name is in the namespace."""
    ns = namespace.prefix()
    names = [app.conf.task_default_queue] + [name for name in app.amqp.queues if name.startswith(ns)]
    return list(dict.fromkeys(names))


def drop(url: str, names: list[str]) -> int:
    """Delete these queues, and the exchanges of the same names, on the RabbitMQ at `url`; return how many
    messages the queues held. Names outside the namespace are left alone; a missing one is no error."""
    from kombu import Connection

    ns = namespace.prefix()
    held = 0
    with Connection(url, connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1)
        for name in (n for n in names if n.startswith(ns)):
            for delete in ("queue_delete", "exchange_delete"):
                channel = conn.channel()  # an error closes the channel it happened on: one channel per step
                try:
                    gone = getattr(channel, delete)(name)
                    held += int(gone or 0) if delete == "queue_delete" else 0
                except conn.channel_errors:
                    pass
                finally:
                    try:
                        channel.close()
                    except Exception:  # already closed by the broker
                        pass
    return held



def wait_for_consumer(url: str, queue: str, timeout: float) -> bool:
    """Wait until someone consumes `queue` (a worker declares and binds it first); False if no one does in time."""
    from kombu import Connection

    deadline = time.monotonic() + timeout
    with Connection(url, connect_timeout=3) as conn:
        while True:
            channel = conn.channel()
            try:
                if channel.queue_declare(queue, passive=True).consumer_count:
                    return True
            except conn.channel_errors:
                pass  # not declared yet
            finally:
                try:
                    channel.close()
                except Exception:  # closed by the broker after a 404
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
