"""`ck.get(result)`: wait for a result, and when none comes, say why instead of hanging or timing out blankly."""
from __future__ import annotations

import re

from celery.exceptions import NotRegistered
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from .defaults import DEFAULTS
from .errors import ResultError
from .worker import live_workers

_UNREGISTERED = re.compile(r"Received unregistered task of type '([^']+)'")


def get(result: AsyncResult, timeout: float = DEFAULTS.result_timeout_s, propagate: bool = True):
    """`result.get()` bounded by `timeout`; on time-out a ResultError that names the likely cause."""
    if not isinstance(result, AsyncResult):
        raise ResultError(f"ck.get() takes the AsyncResult that delay()/apply_async() returned, "
                          f"not {type(result).__name__}", fix="e.g. r = add.delay(2, 3); ck.get(r)")
    try:
        return result.get(timeout=timeout, propagate=propagate)
    except CeleryTimeout:
        raise why_no_result(result, timeout) from None
    except NotRegistered as exc:
        # Celery 5.7 workers store FAILURE(NotRegistered) for a task they do not know.
        raise ResultError(f"the worker does not know a task named {str(exc).strip(chr(39))!r}, so it failed it",
                          fix="define the task in a module the worker imports (e.g. with %%writefile), "
                              "import it from there, then restart the worker") from None


def why_no_result(result: AsyncResult, waited: float) -> ResultError:
    for worker in live_workers():
        names = _UNREGISTERED.findall(worker.logs())
        if names:
            return ResultError(
                f"worker {worker.name} discarded a task of unregistered type {names[-1]!r}: it does not know "
                "that task, so the result will never come",
                fix=f"define the task in a module the worker imports ({worker.module!r} or one it imports), "
                    "then restart the worker")
    replies = result.app.control.ping(timeout=0.5) or []
    if not replies:
        return ResultError(f"no result after {waited:g} s: no worker is running in the course namespace, so "
                           f"the task waits in the queue (state {result.state})",
                           fix="start one: `with ck.Worker('your.module') as w: ...`")
    nodes = ", ".join(name for reply in replies for name in reply)
    return ResultError(f"no result after {waited:g} s (state {result.state}); workers answering: {nodes}",
                       fix="is the task sent to a queue these workers consume (-Q)? Is it still running, "
                           "or waiting for a countdown/eta? Wait longer with ck.get(result, timeout=...)")
