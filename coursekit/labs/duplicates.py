"""Chapter 07: where duplicate runs come from, and idempotent tasks that survive them.

Every task here "charges a card": it writes one entry per charge to the side-effect ledger `payments`
(`coursekit.Ledger`), keyed by the order. The ledger, not the task's own return value, says how many times a card
was charged. `gateway_s` stands for the payment gateway's latency: long enough that two copies of one task overlap.
"""
import os
import time

import redis

from . import lab_app
from .. import ledger
from ..ledger import Ledger

app = lab_app(__name__)
GATEWAY_S = 0.5
"""How long the payment gateway takes to answer a charge."""
DB_RTT_S = 0.1
"""How long `db()` takes for each command: a database across a network. It is what makes a read-then-write race
show on every run, as it does in production, instead of hiding in the microseconds between two local commands."""


def payments() -> Ledger:
    return Ledger("payments")


def charge(order, amount=10, how=""):
    """The side effect: the gateway takes GATEWAY_S, then the card is charged (one ledger entry)."""
    time.sleep(GATEWAY_S)
    payments().write(order, amount=amount, how=how)
    return f"charged {order} {amount}"


class _Remote(redis.Redis):
    """A Redis client whose every command takes DB_RTT_S longer, as over a network."""

    def execute_command(self, *args, **options):
        time.sleep(DB_RTT_S)
        return super().execute_command(*args, **options)


_dbs: dict[int, redis.Redis] = {}


def db() -> redis.Redis:
    """A Redis client on the course broker, each command DB_RTT_S away: where an idempotent task keeps its business
    keys. (One per process: a forked pool child must not share its parent's socket.)"""
    if os.getpid() not in _dbs:
        _dbs[os.getpid()] = _Remote(connection_pool=ledger.client().connection_pool)
    return _dbs[os.getpid()]


def business_key(order) -> str:
    """The key that says `order` is paid, in the course namespace (so a reset deletes it with the rest)."""
    from .. import namespace

    return f"{namespace.prefix()}paid:{order}"


@app.task(acks_late=True)
def slow_charge(order, seconds):
    """Charges, then works `seconds` more (a receipt, a PDF): acknowledged only when it ends."""
    charge(order, how="acks_late")
    time.sleep(seconds)
    return order


@app.task
def slow_charge_early(order, seconds):
    """slow_charge acknowledged when the worker takes it (Celery's default): a redelivery has nothing to restore."""
    charge(order, how="early ack")
    time.sleep(seconds)
    return order


@app.task
def pay(order):
    """A plain charge, acknowledged when the worker takes it."""
    return charge(order, how="plain")


@app.task(bind=True, max_retries=1)
def charge_then_retry(self, order):
    """Charges, then the receipt service times out and the task retries: the whole task runs again."""
    charge(order, how="retry")
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=0.2)
    return order


@app.task
def pay_if_unpaid(order):
    """A state check that is not atomic: read, charge, then write. Two copies at once both read "unpaid"."""
    if db().get(business_key(order)):
        return f"{order} already paid"
    result = charge(order, how="check, then set")
    db().set(business_key(order), "paid", ex=3600)
    return result


@app.task
def pay_once(order):
    """Idempotent: the business key is claimed with SET NX before the side effect; only the copy that wins it
    charges."""
    if not db().set(business_key(order), "charging", nx=True, ex=3600):
        return f"{order} already paid"
    return charge(order, how="set nx")


