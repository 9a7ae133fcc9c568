"""Chapter 04: priorities. The same short tasks on Redis and on RabbitMQ.

`app` is on the course's Redis. The RabbitMQ apps are made on first use (so a Redis worker never looks for
RabbitMQ): `on_rabbitmq` declares its queues with `x-max-priority` 10 (`task_queue_max_priority=10`),
`on_rabbitmq_fifo` without it. Workers name them as `celery -A` does: `coursekit.labs.prioritised:on_rabbitmq`.
On RabbitMQ each app's queue is a course queue of its own (`coursekit.rabbit`): the two differ in arguments, so
they cannot share a name.
"""
import time

from celery import Celery

from .. import namespace, rabbit
from ..errors import BrokerError
from . import lab_app, ran_here

app = lab_app(__name__)

RABBITMQ_APPS = {"on_rabbitmq": 10, "on_rabbitmq_fifo": None}
"""Module attribute -> the x-max-priority its queues carry (None: none, so RabbitMQ ignores priorities)."""


def gate_key(name: str) -> str:
    """The Redis key whose existence opens the gate `name` (namespaced, like every key the course writes)."""
    return f"{namespace.prefix()}gate:{name}"


def open_gate(name: str) -> None:
    """Let every `hold` task waiting on `name` go on. The key expires by itself a minute later."""
    import redis

    with redis.Redis.from_url(str(app.conf.broker_url)) as client:
        client.set(gate_key(name), 1, px=60_000)


def _tasks_on(target: Celery) -> None:
    """Declare the lab's tasks on `target`, under the same names on every app."""

    @target.task(name=f"{__name__}.job")
    def job(label, seconds=0.2):
        """A short piece of work, labelled (e.g. with the priority it was sent with)."""
        time.sleep(seconds)
        return {"label": label, **ran_here()}

    @target.task(name=f"{__name__}.hold")
    def hold(label, gate, seconds=0.3, limit=10.0):
        """Keeps its worker busy until the notebook opens `gate` (at most `limit` s), then works `seconds`: the
        notebook sends what it needs while the worker is surely busy, whatever the machine's load."""
        import redis

        deadline = time.monotonic() + limit
        with redis.Redis.from_url(str(app.conf.broker_url)) as client:
            while not client.exists(gate_key(gate)) and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(seconds)
        return {"label": label, **ran_here()}


def task_on(target: Celery, name: str):
    """The lab task `name` ('job' or 'hold') as declared on `target`."""
    return target.tasks[f"{__name__}.{name}"]


_tasks_on(app)
job, hold = task_on(app, "job"), task_on(app, "hold")


def __getattr__(name: str) -> Celery:
    """`on_rabbitmq` and `on_rabbitmq_fifo`, made (with the lab's tasks) the first time they are asked for."""
    if name not in RABBITMQ_APPS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    url, why = rabbit.find()
    if url is None:
        raise BrokerError(f"{name} needs RabbitMQ: {why}", fix="start RabbitMQ, or set COURSEKIT_RABBITMQ_URL")
    max_priority = RABBITMQ_APPS[name]
    made = rabbit.app(f"prioritised_{'max' + str(max_priority) if max_priority else 'fifo'}", url,
                      max_priority=max_priority)
    _tasks_on(made)
    globals()[name] = made
    return made
