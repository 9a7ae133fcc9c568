"""Exercise 13.commit: an order saved in a SQLite transaction, and the invoice task that reads it.

The database is a SQLite file in a temporary folder of the namespace's own, so the check's process and its worker
open the same file. `transaction()` is the helper a web framework gives a request: rows written inside it are
committed when the `with` block ends, and callbacks given to `on_commit` run right after that commit (as Django's
`transaction.on_commit` and SQLAlchemy's after-commit event do). A commit can fail: the transaction is rolled back,
`CommitFailed` leaves the `with` block, and no on_commit callback runs. `read_order` and `invoice` are what the task
calls; each leaves an entry in a ledger, so a check sees every read (and whether it found the row) and every invoice.
"""
from __future__ import annotations

import random
import re
import sqlite3
import tempfile
import time
from pathlib import Path

from .. import namespace
from ..ledger import Ledger

_fates: list[tuple[float, bool]] = []
"""What the next commits do, (seconds held, whether it commits), one drawn at random at each commit from those left;
the check sets them with `hold_commits`. Drawn at the commit, so no code can read before it which one it gets."""
commits: dict[int, float] = {}
"""Order id -> Unix time its transaction committed, in this process."""
held: dict[int, float] = {}
"""Order id -> how long its commit was held."""
rolled_back: dict[int, float] = {}
"""Order id -> Unix time its transaction rolled back (the commit failed)."""


class CommitFailed(sqlite3.DatabaseError):
    """The database refused the commit (as a deferred constraint or a lost connection would): rolled back."""


class OrderMissing(LookupError):
    """read_order found no committed row for the order."""


def database() -> Path:
    """The shop's SQLite file, in a temporary folder of this namespace (the same path in every process)."""
    folder = Path(tempfile.gettempdir()) / f"coursekit-ex13-{re.sub(r'[^A-Za-z0-9_-]', '', namespace.prefix())}"
    return folder / "shop.sqlite"


def _connect() -> sqlite3.Connection:
    return sqlite3.connect(database(), timeout=10)


def reset() -> None:
    """An empty orders table, and empty ledgers of reads and invoices."""
    database().parent.mkdir(parents=True, exist_ok=True)
    with _connect() as conn:
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL)")
    conn.close()
    commits.clear()
    held.clear()
    rolled_back.clear()
    reads().clear()
    invoices().clear()


def drop() -> None:
    """Delete the database and its folder. A task that reads later fails to open it (and creates nothing)."""
    path = database()
    for leftover in (path, path.with_name(path.name + "-journal")):
        leftover.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # gone already, or something else in it: leave it
        pass


def reads() -> Ledger:
    return Ledger("ex13_reads")


def invoices() -> Ledger:
    return Ledger("ex13_invoices")


class Transaction:
    """`with transaction() as tx:` one database transaction: `tx.insert_order(...)`, `tx.on_commit(fn)`."""

    def __init__(self):
        self.conn = _connect()
        self.saved: list[int] = []
        self.callbacks: list = []

    def insert_order(self, order_id: int, total: int) -> None:
        self.conn.execute("INSERT INTO orders (id, total) VALUES (?, ?)", (order_id, total))
        self.saved.append(order_id)

    def on_commit(self, callback) -> None:
        """Call `callback()` once the transaction has committed (never, if it rolls back)."""
        self.callbacks.append(callback)

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is not None:
                self.conn.rollback()
                return
            hold, commits_ = _fates.pop(random.SystemRandom().randrange(len(_fates))) if _fates else (0.0, True)
            for order_id in self.saved:
                held[order_id] = hold
            time.sleep(hold)  # the request's other work: the row stays uncommitted meanwhile
            if not commits_:
                self.conn.rollback()
                at = time.time()
                for order_id in self.saved:
                    rolled_back[order_id] = at
                raise CommitFailed("the database refused the commit: the transaction was rolled back")
            # the clock is read before committing: a task polling the table sees the row the moment it lands,
            # which can be before a clock read just after the commit
            at = time.time()
            self.conn.commit()
            for order_id in self.saved:
                commits[order_id] = at
        finally:
            self.conn.close()
        for callback in self.callbacks:
            callback()


def transaction() -> Transaction:
    return Transaction()


def read_order(order_id: int) -> dict:
    """The committed order {"id", "total"}; OrderMissing when no committed row holds it."""
    conn = _connect()
    try:
        row = conn.execute("SELECT id, total FROM orders WHERE id = ?", (order_id,)).fetchone()
    finally:
        conn.close()
    reads().write(order_id, found=row is not None)
    if row is None:
        raise OrderMissing(f"no order {order_id} in the database")
    return {"id": row[0], "total": row[1]}


def invoice(order: dict) -> str:
    """The side effect: an invoice for the order's total."""
    invoices().write(order["id"], total=order["total"])
    return f"invoiced order {order['id']}: {order['total']}"


# -- what the check does ------------------------------------------------------------------------------------------
def hold_commits(*fates: tuple[float, bool]) -> None:
    """The next commits in this process: each draws one (seconds held, whether it commits) of these at random, at
    the commit; once none is left, commits are neither held nor failed."""
    _fates[:] = fates


def in_database(order_id: int) -> bool:
    """Whether a committed row holds the order (no ledger entry: the check's own look)."""
    if not database().exists():
        return False
    conn = _connect()
    try:
        return conn.execute("SELECT 1 FROM orders WHERE id = ?", (order_id,)).fetchone() is not None
    finally:
        conn.close()


def edit_order(order_id: int, total: int) -> None:
    """The customer changes the order (committed at once)."""
    with _connect() as conn:
        conn.execute("UPDATE orders SET total = ? WHERE id = ?", (total, order_id))
    conn.close()
