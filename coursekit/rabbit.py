"""RabbitMQ for the course: whether it is there, apps and queues that keep to the namespace, and their removal.

RabbitMQ has no key prefix, so every queue and exchange the course declares is named with the namespace
(`make_app` does it for an app's default queue and its event and control exchanges). Two more rules:

- A course queue carries `x-expires`: RabbitMQ deletes it by itself once it has gone unused that long, so a run
  that crashed leaves nothing behind for good. A run that ends well deletes its queues at once (`delete`).
- RabbitMQ refuses to declare an existing queue with other arguments (PRECONDITION_FAILED, and the channel
  closes). Queues that differ in their arguments (with and without `x-max-priority`) need names of their own.

The API, for lessons and exercise checks alike:
    url, why = rabbit.find()                      # the broker's URL, or None and one line saying why
    rabbit.version(url)                           # 'RabbitMQ 3.10.8', as the broker says
    app = rabbit.app("ex04_rmq", url, max_priority=10)  # make_app on RabbitMQ; its queue `<ns>ex04_rmq` expires
    rabbit.queue("ex04_other", max_priority=10)   # one more course queue (a kombu Queue), for `task_queues=`
    rabbit.purge(app)                             # empty the app's queues (those not declared yet are skipped)
    # and, from queues.py: queues.depth(app, name), the messages ready in a queue (0 when it does not exist)
    rabbit.delete(app)                            # the app's queues and exchanges, gone; returns what it deleted
    rabbit.is_amqp(app_or_url)                    # whether an app (or a URL) is on RabbitMQ rather than Redis
    rabbit.drop(url, names)                       # these course queues and their same-named exchanges, gone
    rabbit.wait_for_consumer(url, queue, timeout) # until a worker reads `queue` (it declares the queue first)
A module that defines such an app next to its Redis one names it for a worker as `celery -A` does:
`ck.Worker("mymodule:rmq_app")`; the worker is given the RabbitMQ URL and keeps the course's Redis for results.
"""
from __future__ import annotations

import time

from celery import Celery
from kombu import Connection, Exchange, Queue

from . import broker, namespace, probe
from .errors import BrokerError

EXPIRES_S = 300
"""A course queue left unused this long (no consumer, no redeclaration) is deleted by RabbitMQ itself."""


def find() -> tuple[str | None, str]:
    """(url, "") when RabbitMQ answers, else (None, one line saying why not), never an exception."""
    try:
        found = broker.rabbitmq()
    except BrokerError as exc:  # COURSEKIT_RABBITMQ_URL names a broker that does not answer
        return None, exc.problem
    if found is None:
        return None, "no RabbitMQ answers on 127.0.0.1:5672, and COURSEKIT_RABBITMQ_URL is not set"
    return found.url, ""


def is_amqp(app_or_url) -> bool:
    url = app_or_url if isinstance(app_or_url, str) else str(app_or_url.conf.broker_url)
    return probe.scheme(url) in probe.AMQP_SCHEMES


def version(url: str) -> str:
    """'RabbitMQ 3.10.8': what the broker at `url` says it is, in its connection handshake."""
    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1)
        told = conn.connection.server_properties
    return f"{told.get('product', 'AMQP broker')} {told.get('version', '(version not told)')}"


def queue(name: str, max_priority: int | None = None, expires_s: int = EXPIRES_S) -> Queue:
    """The course queue `<namespace><name>`, bound to a direct exchange of the same name (as Celery's default
    queue is), expiring after `expires_s` unused, with `x-max-priority` when `max_priority` is given."""
    full = f"{namespace.prefix()}{name}"
    arguments = {"x-expires": int(expires_s * 1000)}
    if max_priority is not None:
        arguments["x-max-priority"] = max_priority
    return Queue(full, Exchange(full, type="direct"), routing_key=full, queue_arguments=arguments)


def app(name: str, url: str, max_priority: int | None = None, **settings) -> Celery:
    """An app on the RabbitMQ at `url` (results in the course's Redis) whose default queue is the course queue
    `<namespace><name>`. `max_priority` sets `task_queue_max_priority`, which gives every queue the app declares
    that `x-max-priority`; without it RabbitMQ ignores message priorities."""
    from .app import make_app

    default = queue(name)
    config = {"task_queues": [default, *settings.pop("task_queues", [])]}
    if max_priority is not None:
        config["task_queue_max_priority"] = max_priority
    made = make_app(name, broker_url=url, **config, **settings)
    assert made.conf.task_default_queue == default.name  # make_app names it the same way
    return made


def ready(conn, name: str) -> int:
    """Messages ready in the queue `name` on the connection `conn`; 0 when it does not exist (yet)."""
    counted = []
    _attempt(conn, lambda ch: counted.append(ch.queue_declare(name, passive=True).message_count))
    return counted[0] if counted else 0


def purge(app: Celery) -> int:
    """Delete the messages waiting in the app's course queues; returns how many. A queue not declared yet is
    skipped."""
    purged = []
    with app.connection_for_write() as conn:
        for q in app.conf.task_queues or []:
            _attempt(conn, lambda ch: purged.append(ch.queue_purge(q.name) or 0))
    return sum(purged)


def names(app: Celery) -> tuple[list[str], list[str]]:
    """(queues, exchanges) that the app and its workers declare and that outlive a connection: its task queues
    and their exchanges, and the event, control and control-reply exchanges. (The queues that workers, recorders
    and `app.control` declare for themselves are auto-delete: RabbitMQ drops each with its consumer. Reading
    `mailbox.reply_queue` here would also pin one reply queue name to the mailbox, and its replies would be lost.)"""
    mailbox = app.control.mailbox
    queues = [q.name for q in app.conf.task_queues or []]
    exchanges = [q.exchange.name for q in app.conf.task_queues or [] if q.exchange is not None and q.exchange.name]
    exchanges += [app.conf.event_exchange, mailbox.exchange.name, mailbox.reply_exchange.name]
    return queues, list(dict.fromkeys(exchanges))


def delete(app: Celery) -> list[str]:
    """Delete the app's queues, then its exchanges that nothing else uses any more (`if_unused`: a worker or
    recorder of the namespace still running keeps the event and control exchanges). Returns what was deleted.
    Run it after the app's workers have stopped; the app can be used again afterwards (it declares anew)."""
    prefix = namespace.prefix()
    queues, exchanges = names(app)
    unsafe = [n for n in queues + exchanges if prefix not in n]
    if unsafe:  # never touch a name outside the namespace
        raise BrokerError(f"refusing to delete {unsafe}: they do not carry the namespace {prefix!r}")
    deleted = []
    with app.connection_for_write() as conn:
        # RabbitMQ answers a delete of a missing name with OK: ask first, so the list says what really went
        for name in queues:
            if _attempt(conn, lambda ch: ch.queue_declare(name, passive=True)) and \
                    _attempt(conn, lambda ch: ch.queue_delete(name)):
                deleted.append(f"queue {name}")
        for name in exchanges:
            if _attempt(conn, lambda ch: ch.exchange_declare(name, "direct", passive=True)) and \
                    _attempt(conn, lambda ch: ch.exchange_delete(name, if_unused=True)):
                deleted.append(f"exchange {name}")
    _forget_declarations(app)
    return deleted


def course_queues(app: Celery) -> list[str]:
    """The app's default queue and every other queue it declares whose name is in the namespace."""
    ns = namespace.prefix()
    names = [app.conf.task_default_queue] + [name for name in app.amqp.queues if name.startswith(ns)]
    return list(dict.fromkeys(names))


def drop(url: str, names: list[str]) -> int:
    """Delete these queues, and the exchanges of the same names, on the RabbitMQ at `url`; return how many
    messages the queues held. Names outside the namespace are left alone; a missing one is no error. (A check
    drops its queues before its experiment, so that one an earlier answer declared with other arguments cannot
    fail this one with PRECONDITION_FAILED, and after it, so that nothing outlives it.)"""
    ns = namespace.prefix()
    held: list[int] = []
    with Connection(url, connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1)
        for name in (n for n in names if n.startswith(ns)):
            _attempt(conn, lambda ch: held.append(int(ch.queue_delete(name) or 0)))
            _attempt(conn, lambda ch: ch.exchange_delete(name))
    return sum(held)


def wait_for_consumer(url: str, queue: str, timeout: float) -> bool:
    """Wait until someone consumes `queue`; False if no one does in time. After `drop`, this process's pooled
    connections do not declare a queue again (kombu remembers what each declared), so nothing may be sent to a
    dropped queue before the worker that reads it has declared it anew."""
    deadline = time.monotonic() + timeout
    with Connection(url, connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1)
        while True:
            consumers: list[int] = []
            _attempt(conn, lambda ch: consumers.append(ch.queue_declare(queue, passive=True).consumer_count))
            if consumers and consumers[0]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def drop_namespace(url: str, prefix: str | None = None) -> list[str]:
    """Delete what Celery declares for a namespace on RabbitMQ and never removes: the event, control and
    control-reply exchanges (queues expire by themselves, see EXPIRES_S). For a namespace that is done with, such
    as a test session's; exchanges still in use are kept. Returns the names deleted."""
    ns = prefix or namespace.prefix()
    named = namespace.celery_config("amqp", ns)
    control = f"{named['control_exchange']}.pidbox"  # kombu's Mailbox names its exchanges from it so
    gone = []
    with Connection(url, connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1)
        for name in (named["event_exchange"], control, f"reply.{control}"):
            if _attempt(conn, lambda ch: ch.exchange_declare(name, "direct", passive=True)) and \
                    _attempt(conn, lambda ch: ch.exchange_delete(name, if_unused=True)):
                gone.append(name)
    return gone


def _forget_declarations(app: Celery) -> None:
    """A kombu connection remembers what it has declared and never declares it again, so after `delete` the
    pooled connections of this process (shared by every app on this broker URL) would publish to exchanges that
    are gone (404 NOT_FOUND). Make them forget. (kombu's pool has no public way to list its connections, and
    `force_close_all(close_pool=False)` leaves it empty, so that the next publish waits forever.)"""
    pool = app.pool
    for conn in [*pool._resource.queue, *pool._dirty]:  # idle and acquired; the rest are not created yet
        if isinstance(conn, Connection):
            conn.declared_entities.clear()


def _attempt(conn, operation) -> bool:
    """Run `operation(channel)` on a fresh channel: a refusal (not found, in use) closes only that channel."""
    channel = conn.channel()
    try:
        operation(channel)
        return True
    except conn.channel_errors:
        return False
    finally:
        _close(channel)


def _close(channel) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker's refusal
        pass
