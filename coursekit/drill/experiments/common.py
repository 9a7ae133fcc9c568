"""What several experiments share: waiting for a result without hanging, and the backend's key of a result."""
from __future__ import annotations

from celery.result import AsyncResult

from ..lab import PATIENCE_S, DrillLab


def finished(lab: DrillLab, result: AsyncResult, seconds: float = PATIENCE_S) -> AsyncResult:
    """Wait until `result` is in a final state (or `seconds` pass); return it, never raising its exception."""
    lab.wait_for(lambda: result.state in ("SUCCESS", "FAILURE", "REVOKED"), seconds)
    return result


def error_name(result: AsyncResult) -> str:
    """`FAILURE: ValueError` (state and exception class), or the bare state when there is no exception."""
    exc = result.result if result.state in ("FAILURE", "REVOKED") else None
    return f"{result.state}: {type(exc).__name__}" if isinstance(exc, BaseException) else result.state


def stored(lab: DrillLab, task_id: str) -> bool:
    """Is a result of `task_id` in the result backend (the key a `get()` reads), whatever its state?"""
    backend = lab.app.backend
    return backend.get(backend.get_key_for_task(task_id)) is not None


def result_key(lab: DrillLab, task_id: str) -> str:
    """The result's Redis key as redis-cli names it (the backend puts the namespace prefix in it)."""
    return lab.app.backend.get_key_for_task(task_id).decode()
