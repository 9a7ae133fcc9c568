"""The tasks of chapter 05 (logging), declared on any app: every logging lab module serves the same tasks, and only
its logging set-up differs (a worker's set-up is decided by the signal receivers its app's module connects, so each
way of taking over logging needs a module of its own).

`checkout(order)` writes three lines, each naming its order, so that a line can be traced to the task that wrote it:
- through a task logger (`celery.utils.log.get_task_logger`): "charging order <order>";
- through a plain `logging.getLogger("shop.payments")`: "gateway accepted <order>";
- with `print()`: "receipt for <order>".
"""
from __future__ import annotations

import logging

from celery import Celery
from celery.utils.log import get_task_logger

from . import ran_here

LINES = {"task logger": "charging order", "plain logger": "gateway accepted", "print": "receipt for"}
"""What each kind of line says, before its order."""

payments = logging.getLogger("shop.payments")


def declare(app: Celery, module: str):
    """Declare `checkout` on `app`, named `<module>.checkout`, and return it."""
    task_log = get_task_logger(f"{module}.checkout")

    @app.task(name=f"{module}.checkout")
    def checkout(order):
        task_log.info("%s %s", LINES["task logger"], order)
        payments.info("%s %s", LINES["plain logger"], order)
        print(f"{LINES['print']} {order}")
        return ran_here()

    return checkout
