"""Chapter 12: canvas. Small tasks to compose into chains, groups and chords, and two that wait the wrong way.

The arithmetic tasks (`add`, `mul`, `total`) sleep `STEP_S` so that each run is a bar wide enough to see on a
timeline. `waits_inside` calls `.get()` on a task of its own: refused by default (`disable_sync_subtasks`), a
deadlock once the guard is off and every pool process waits. `fails` raises, to show where errors surface;
`note_failure` is an error callback that writes the failed task's id to a ledger. The exercises' helpers follow:
`count_words` fails its first attempt at a page marked flaky, `settle_payment` declines a card marked declined
(both marks are Redis sets in the course namespace), and the tasks of an order pipeline.
"""
from __future__ import annotations

import time

from ..ledger import Ledger, client
from . import lab_app, ran_here

app = lab_app(__name__)

STEP_S = 0.3
"""How long each arithmetic step takes: long enough to be a bar on the timeline, short enough for a lesson."""


@app.task
def add(x, y):
    time.sleep(STEP_S)
    return x + y


@app.task
def mul(x, k):
    time.sleep(STEP_S)
    return x * k


@app.task
def total(numbers):
    """The fan-in step: sums what the header of a chord (or a group before it) returned."""
    time.sleep(STEP_S)
    return sum(numbers)


@app.task
def fails(x, why="bad input"):
    time.sleep(STEP_S)
    raise ValueError(f"{why}: {x!r}")


@app.task(bind=True)
def waits_inside(self, x, guard=True, limit=60.0):
    """The anti-pattern: send a subtask (to the queue this task came from, as a default queue would) and block on
    its result, inside a task. `guard=False` turns Celery's refusal off (disable_sync_subtasks=False); `limit`
    bounds the wait so that a forgotten pool does not hang for ever."""
    queue = (self.request.delivery_info or {}).get("routing_key") or app.conf.task_default_queue
    sub = add.apply_async((x, 1), queue=queue)
    return sub.get(timeout=limit, disable_sync_subtasks=guard)


def drop_held(queue: str) -> int:
    """Delete the messages of `queue` that a killed worker held unacknowledged (kombu's `unacked` hash, in the
    namespace): otherwise Redis would hand them back an hour later. Returns how many."""
    from .. import queues

    return queues.drop_held(app, queue)


def attempts_key(name: str) -> str:
    from .. import namespace

    return f"{namespace.prefix()}canvas:attempts:{name}"


def attempt(name: str) -> int:
    """Count one attempt at `name` (a Redis counter in the namespace that expires after a minute); returns the
    count so far."""
    key = attempts_key(name)
    pipe = client().pipeline()
    pipe.incr(key)
    pipe.expire(key, 60)
    return int(pipe.execute()[0])


class PageTimeout(ConnectionError):
    """The flaky page's first fetch: a transient error, the kind worth retrying."""


def marked_key(kind: str) -> str:
    """The Redis set of pages (kind "flaky") or cards (kind "declined") that a lesson or a check marked."""
    from .. import namespace

    return f"{namespace.prefix()}canvas:{kind}"


def mark(kind: str, *names: str) -> None:
    """Mark pages as flaky or cards as declined, for two minutes."""
    pipe = client().pipeline()
    pipe.sadd(marked_key(kind), *names)
    pipe.expire(marked_key(kind), 120)
    pipe.execute()


def write_words(counts: dict[str, int]) -> None:
    """Give pages their numbers of words (a check's hidden input), for two minutes."""
    pipe = client().pipeline()
    pipe.hset(marked_key("words"), mapping=counts)
    pipe.expire(marked_key("words"), 120)
    pipe.execute()


def count_words(page: str) -> int:
    """The words on `page`: the number given to it (`write_words`), else its length in characters. A page marked
    flaky (`mark("flaky", page)`) raises PageTimeout on its first attempt and answers on the next ones. Each call
    counts as an attempt (`attempts_key(page)`)."""
    n = attempt(page)
    time.sleep(0.1)
    if n == 1 and client().sismember(marked_key("flaky"), page):
        raise PageTimeout(f"{page} timed out (attempt {n})")
    words = client().hget(marked_key("words"), page)
    return int(words) if words is not None else len(page)


class CardDeclined(ValueError):
    """The bank said no: retrying will not change its mind."""


def settle_payment(card: str, amount: int) -> dict:
    """Charge `amount` to `card`; a card marked declined (`mark("declined", card)`) raises CardDeclined."""
    time.sleep(0.05)
    if client().sismember(marked_key("declined"), card):
        raise CardDeclined(f"card {card} declined")
    return {"card": card, "amount": amount, **ran_here()}


# -- the order pipeline (exercise 12.chain) --------------------------------------------------------------------
def prices_of(order_id: int) -> list[int]:
    """The prices of an order's items: made up, the same for one order, plus the price of an item added last
    (`add_item`) if any."""
    added = client().get(f"{marked_key('added')}:{order_id}")
    return [order_id % 7 + 3, order_id % 11 + 5, 4] + ([int(added)] if added is not None else [])


def add_item(order_id: int, price: int) -> None:
    """Put one more item in the order (replacing one added before), for two minutes: a check changes the order
    between building its pipeline and running it, as a customer would."""
    client().set(f"{marked_key('added')}:{order_id}", price, ex=120)


@app.task
def load_order(order_id):
    return prices_of(order_id)


@app.task
def sum_prices(prices):
    if not isinstance(prices, list):
        raise TypeError(f"sum_prices takes the list of prices load_order returns, not {prices!r}")
    return sum(prices)


@app.task
def charge(amount, order_id):
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"charge(amount, order_id) takes the amount first, a number, not {amount!r}")
    Ledger("ex12-charges").write(order_id, amount=amount)
    return amount


@app.task
def release_stock(order_id):
    """Frees the order's items in stock; returns a release ticket, new every time."""
    import uuid

    ticket = f"{order_id}/{uuid.uuid4().hex[:6]}"
    Ledger("ex12-stock").write(order_id, ticket=ticket)
    return ticket


@app.task
def email(ticket):
    return f"mailed: {ticket}"


@app.task
def note_failure(request, exc, traceback):
    """An error callback: called in the worker that ran the failed task, with that task's request."""
    Ledger("canvas-failures").write(request.id, task=request.task, error=type(exc).__name__)


@app.task
def where(x):
    """Returns its argument and where it ran: the data flowing between steps, with the process that handled it."""
    time.sleep(STEP_S)
    return {"got": x, **ran_here()}


def let_go(app_=None) -> int:
    """Stop listening for results nobody will collect now (an ignored chord's, a failed chord's callback, a killed
    waiter's): Celery's Redis backend keeps a pub/sub subscription per awaited result, and drops it when the
    AsyncResult is garbage-collected. At kernel shutdown that happens while Python is half gone, and each one
    prints a traceback; here it happens while Python runs, through the consumer's public `cancel_for(task_id)`,
    the very call that garbage collection ends in (`AsyncResult.__del__` -> `remove_pending_result`). Returns how
    many subscriptions were dropped."""
    backend = (app_ or app).backend
    consumer = backend.result_consumer
    prefix = backend.get_key_for_task("-")[:-1]  # the subscribed channels are the results' keys: prefix + task id
    ids = [key[len(prefix):] for key in list(getattr(consumer, "subscribed_to", ())) if key.startswith(prefix)]
    for task_id in ids:
        consumer.cancel_for(task_id.decode() if isinstance(task_id, bytes) else task_id)
    return len(ids)
