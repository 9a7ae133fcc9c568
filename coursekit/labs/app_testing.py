"""Chapter 13, part 7: tasks whose bugs `task_always_eager` hides, and the real worker that shows them.

Each task carries a bug that a real deployment meets: `ship` takes a domain object (`Order`) as its argument (eager
mode catches that one too: it round-trips arguments), `tags` returns a set (JSON has none), `slow` outlasts its own
`soft_time_limit` (only a prefork worker enforces it), and `flaky` retries with a countdown (each attempt writes a
ledger entry, so its timing can be read back).
The lab imports `celery.contrib.testing.tasks`, which registers `celery.ping`: `start_worker` pings the worker it
starts with that task, and refuses to start without it.
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import logging
import time
from dataclasses import dataclass

import celery.contrib.testing.tasks  # noqa: F401  registers celery.ping, which start_worker's ping check needs

from ..ledger import Ledger
from . import lab_app

# The test helper runs a worker inside the notebook's own process: it must not take over the notebook's logging.
app = lab_app(__name__, worker_hijack_root_logger=False)

LEDGER = "app-testing-attempts"


@dataclass
class Order:
    """A domain object, as an ORM would hand one to the code that sends the task."""
    id: int
    customer: str


@app.task
def ship(order):
    return f"shipped order {order.id}"


@app.task
def tags(names):
    """Returns a set: fine in Python, and JSON has no sets."""
    return {name.lower() for name in names}


@app.task(soft_time_limit=0.2)
def slow(seconds):
    time.sleep(seconds)
    return "done"


@app.task(bind=True, max_retries=3)
def flaky(self, fail_times: int, countdown: float, run: str):
    """Fails its first `fail_times` attempts and retries each after `countdown` s. Every attempt writes a ledger
    entry (key `run`) with its time, so the gaps between attempts can be measured."""
    Ledger(LEDGER).write(run, attempt=self.request.retries)
    if self.request.retries < fail_times:
        raise self.retry(countdown=countdown)
    return self.request.retries


@contextlib.contextmanager
def eager(propagates: bool = True, celery_app=app):
    """`task_always_eager` switched on for the block, as a test settings override does, then off again; with
    `task_eager_propagates` (default here True, as tests set it; Celery's default is False). Only this process is
    affected: a worker process keeps its own settings."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, propagates
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_eager_propagates = saved


@contextlib.contextmanager
def logging_restored():
    """Put this process's logging back as it was after the block. `celery.contrib.testing.worker.start_worker` sets
    up logging in the process it runs in, as a worker does: a handler on the root logger, on `celery.task` and on
    the multiprocessing logger (each to its log file), their levels, and `logging.captureWarnings(True)`. In a test
    process, or a notebook, all of that outlives the worker (and its log file)."""
    from celery.utils.log import get_multiprocessing_logger

    loggers = [logging.getLogger(), logging.getLogger("celery.task"), get_multiprocessing_logger()]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    warnings_captured = logging._warnings_showwarning is not None  # what captureWarnings(True) sets
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        logging.captureWarnings(warnings_captured)


def pytest_fixtures() -> list[dict]:
    """The fixtures that Celery's pytest plugin (`celery.contrib.pytest`) defines, read from its source: name,
    scope, and the first line of the docstring."""
    import celery.contrib.pytest as plugin

    found = []
    for node in ast.parse(inspect.getsource(plugin)).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call else deco
            if isinstance(target, ast.Attribute) and target.attr == "fixture":
                scope = next((k.value.value for k in (call.keywords if call else []) if k.arg == "scope"),
                             "function")
                doc = (ast.get_docstring(node) or "").strip().splitlines()
                last = node.body[-1]
                gives = ast.unparse(last.value) if isinstance(last, ast.Return) and last.value else ""
                if any(isinstance(n, ast.Yield) for n in ast.walk(node)):
                    # what comes after the yield runs when the fixture's scope ends: one test, or the session
                    gives = f"(yields, stops after the {'test' if scope == 'function' else scope})"
                found.append({"fixture": node.name, "scope": scope, "returns": gives, "says": doc[0] if doc else ""})
    return found
