"""Chapter 13, parts 1-4: Celery inside an application. Tasks that read an order database, that are rate limited
(by each worker's own bucket, or by one bucket in Redis that every worker shares), and that wait or run long
enough to be revoked.

The order database is an SQLite file whose path the worker reads from `ORDERS_DB`, as a real worker reads its
database URL from its settings. `ship` reads the order fresh by its id; `ship_copy` acts on the copy of the order
that travelled in its message. The workers also run today's release of the tasks of part 2 (`deploy_new`).
"""
from __future__ import annotations

import os
import sqlite3
import time

from ..ledger import Ledger, client
from . import lab_app, ran_here

app = lab_app(__name__, include=["coursekit.labs.deploy_new"])

API_RATE = "10/s"
"""Celery's own `rate_limit` of `call_api`: ten starts a second, kept by a token bucket in each worker."""

SHARED_PER_S = 10
"""The rate of the bucket in Redis that every worker asks before `call_api_shared` does its work."""


class OrderMissing(LookupError):
    """The order the task was given does not exist, as far as the database shows this reader."""


def orders_db() -> sqlite3.Connection:
    return sqlite3.connect(os.environ["ORDERS_DB"], timeout=5)


def decide(order_id, status) -> dict:
    """What shipping does with an order: ship a paid one, skip any other."""
    return {"order": order_id, "status": status, "action": "shipped" if status == "paid" else "skipped"}


@app.task
def ship(order_id: int) -> dict:
    """Reads the order by its id when it runs: the row as committed now, or none."""
    with orders_db() as db:
        row = db.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise OrderMissing(f"order {order_id} not found")
    return decide(order_id, row[0]) | ran_here()


@app.task
def ship_copy(order: dict) -> dict:
    """Acts on the order as it was when the message was sent: the copy in the message, however old."""
    return decide(order["id"], order["status"]) | ran_here()


@app.task(rate_limit=API_RATE)
def call_api(n: int) -> dict:
    return ran_here()


# A token bucket every worker shares, kept in Redis as the time its next token is due (the generic cell rate
# algorithm: a bucket of one token, like Celery's own). One script call, atomic: it reserves the caller's token and
# says how long to wait for it. Redis's clock, not the workers', so that workers on several hosts agree.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local interval = tonumber(ARGV[1])
local due = tonumber(redis.call('GET', KEYS[1]) or now)
local mine = math.max(due, now)
redis.call('SET', KEYS[1], tostring(mine + interval), 'PX', math.ceil((mine - now + interval) * 1000) + 1000)
return tostring(mine - now)
"""


def bucket_key(name: str) -> str:
    from .. import namespace

    return f"{namespace.prefix()}bucket:{name}"


def reserve_token(name: str, per_second: float) -> float:
    """Reserve the next token of the shared bucket `name`; return how many seconds until it is due (0: now)."""
    return float(client().eval(RESERVE, 1, bucket_key(name), 1.0 / per_second))


@app.task(bind=True, max_retries=None)
def call_api_shared(self, n: int, reserved: bool = False) -> dict:
    """Asks the shared bucket first. A token due later is waited for as a countdown (the pool process is free
    meanwhile), and the retry runs with its token already reserved."""
    if not reserved:
        wait = reserve_token("api", SHARED_PER_S)
        if wait > 0.001:
            raise self.retry(kwargs={"n": n, "reserved": True}, countdown=wait)
    return ran_here()


@app.task
def later(tag: str) -> dict:
    """A task sent with a countdown, to be revoked while it waits."""
    return {"tag": tag} | ran_here()


@app.task(bind=True)
def long_job(self, seconds: float) -> str:
    """Notes its start and its end in the ledger 'application-jobs': an end never written is a job cut short."""
    jobs = Ledger("application-jobs")
    jobs.write(self.request.id, event="started")
    time.sleep(seconds)
    jobs.write(self.request.id, event="finished")
    return "finished"
