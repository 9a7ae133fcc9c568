"""Celery apps and tasks the lessons run. Workers import these modules with `celery -A coursekit.labs.NAME`.

A lab declares its app with `app = lab_app(__name__)`, and its tasks report where and when they ran with
`ran_here()`, so that a lesson measures rather than asserts."""
from __future__ import annotations

import os
import time


def lab_app(module: str, **settings):
    """The app of the lab module `module` (pass `__name__`), on the course broker. It is named after the module,
    so its default queue is the lab's own: a worker left running from one lesson never takes another's tasks."""
    from ..app import make_app

    return make_app(module.rsplit(".", 1)[-1], **settings)


def ran_here() -> dict:
    """Where and when a task body runs: the pid of the process (a worker's pool child, or this one under
    apply()) and the Unix time."""
    return {"pid": os.getpid(), "at": time.time()}
