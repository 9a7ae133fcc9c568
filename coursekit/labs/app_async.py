"""Chapter 13, part 6: `async def` code in a Celery task.

Celery 5.7 calls a task's function and takes what it returns as the result; nothing in the worker awaits. So
`fetch_async`, an `async def` decorated as a task, returns a coroutine object that is never run: its body (which
waits, then writes a ledger entry) never happens. `fetch` is the fix: a plain task that runs the coroutine to its
end with `asyncio.run`. `fetch_many` runs many such waits concurrently inside one task, on one event loop.
"""
from __future__ import annotations

import asyncio

from ..ledger import Ledger
from . import lab_app, ran_here

app = lab_app(__name__)

LEDGER = "app-async"
"""The ledger each coroutine body writes to when it really runs: the witness that it did."""


async def fetch_page(n: int, wait_s: float) -> dict:
    """Stands in for an awaited call (an HTTP request, a database query): it waits `wait_s` without blocking the
    event loop, and says when it was done (before any blocking call can delay the other coroutines' clocks)."""
    await asyncio.sleep(wait_s)
    return {"n": n, **ran_here()}


def note(*pages: dict) -> None:
    """Write each page's ledger entry, at the time its wait ended: the witness that the coroutine really ran."""
    ledger = Ledger(LEDGER)
    for page in pages:
        ledger.write(page["n"], at=page["at"])


@app.task
async def fetch_async(n: int, wait_s: float = 0.1):
    """The mistake: an `async def` task. Calling it builds a coroutine; the worker never awaits it."""
    page = await fetch_page(n, wait_s)
    note(page)
    return page


@app.task(ignore_result=True)
async def fetch_async_quiet(n: int, wait_s: float = 0.1):
    """The same mistake on a task whose result is ignored: nothing has to encode the coroutine."""
    page = await fetch_page(n, wait_s)
    note(page)
    return page


@app.task
def fetch(n: int, wait_s: float = 0.1):
    """The fix: a plain task that runs the coroutine on an event loop of its own, to its end."""
    page = asyncio.run(fetch_page(n, wait_s))
    note(page)
    return page


@app.task
def fetch_many(ns: list[int], wait_s: float = 0.1):
    """Many awaits in one task: they wait side by side on one event loop (`asyncio.gather`)."""
    async def all_of_them():
        return await asyncio.gather(*(fetch_page(n, wait_s) for n in ns))
    pages = asyncio.run(all_of_them())
    note(*pages)
    return pages
