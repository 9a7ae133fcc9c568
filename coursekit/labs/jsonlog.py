"""A JSON formatter for a log shipper: one object a line, with the id and name of the task the record came from.

Any record logged while a task runs carries them, whichever logger wrote it (a task logger, a plain
`logging.getLogger(...)`, a redirected print), because the formatter asks Celery which task this process is running
(`celery._state.get_current_task`), as Celery's own `TaskFormatter` does. Outside a task both are null.
"""
from __future__ import annotations

import json
import logging

from celery._state import get_current_task


class JsonFormatter(logging.Formatter):
    """`{"time": ..., "level": "INFO", "logger": "shop.payments", "process": "ForkPoolWorker-1", "pid": 123,
    "task_id": "...", "task_name": "...", "message": "..."}`"""

    def format(self, record: logging.LogRecord) -> str:
        task_id, task_name = getattr(record, "task_id", None), getattr(record, "task_name", None)
        if task_id is None:
            task_id, task_name = current_task_of_this_thread()
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "task_id": task_id,
            "task_name": task_name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def current_task_of_this_thread() -> tuple[str | None, str | None]:
    """The id and name of the task this thread runs now, or (None, None)."""
    task = get_current_task()
    task_id = getattr(getattr(task, "request", None), "id", None)
    return task_id, (task.name if task_id else None)


class StampTask(logging.Filter):
    """Put the task's id and name on each record where it is logged: a handler that formats in another thread
    (a `QueueListener`'s) would find no current task there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:
            record.task_id, record.task_name = current_task_of_this_thread()
        return True


def stdout_handler(level: int = logging.INFO) -> logging.Handler:
    """A handler that writes JSON lines to the process's stdout."""
    import sys

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    return handler
