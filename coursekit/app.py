"""`make_app`: the Celery app every lesson and learner module uses, already wired to the course's broker,
namespace and events. Worker subprocesses get their broker and extra settings from the environment that
`coursekit.Worker` gives them, so the notebook and its workers always agree."""
from __future__ import annotations

import json
import os

from celery import Celery
from celery.signals import task_prerun

from . import broker, namespace, probe
from .errors import CourseError

WORKER_CONFIG_ENV = "COURSEKIT_WORKER_CONFIG"


def _merge(base: dict, extra: dict) -> dict:
    """Merge settings, dict-valued ones key by key, so extra transport options keep the namespace prefix."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _refuse_notebook_task(fun) -> None:
    if getattr(fun, "__module__", None) == "__main__":
        raise CourseError(
            f"task {getattr(fun, '__name__', fun)!r} is defined in the notebook itself, so no worker can "
            "import it (the worker would fail it as an unregistered task)",
            fix="put the task in a module: `%%writefile mytasks.py` in a cell, then `from mytasks import ...`")


class CourseCelery(Celery):
    """A Celery app that refuses tasks defined in a notebook cell, which workers could never import."""

    def task(self, *args, **opts):
        # Not shared: Celery's default copies every task into every app created later in the process, so a
        # learner's module loaded twice (a re-check) would bring its old version along.
        opts.setdefault("shared", False)
        if len(args) == 1 and callable(args[0]):  # @app.task
            _refuse_notebook_task(args[0])
            return super().task(*args, **opts)
        decorator = super().task(*args, **opts)  # @app.task(...)

        def checked(fun):
            _refuse_notebook_task(fun)
            return decorator(fun)

        return checked


@task_prerun.connect(weak=False)
def _announce_child(task=None, **_):
    """Prefork sends task-started from the worker's MAIN process, so its pid says nothing about which pool child
    ran the task. This event, sent by the child itself, lets the recorder draw one lane per child."""
    if isinstance(getattr(task, "app", None), CourseCelery) and not task.request.is_eager \
            and task.app.conf.worker_send_task_events:
        task.send_event("task-child", retry=False, child_pid=os.getpid())


def make_app(name: str, broker_url: str | None = None, results: bool = True, **settings) -> Celery:
    """A Celery app named `name` on the course broker (Redis unless `broker_url` says otherwise).

    Results go to Redis (the broker itself when it is Redis); `results=False` gives an app with no result
    backend. Settings passed here come first; a worker started with `Worker(config=...)` adds its own on top.
    """
    url = broker_url or broker.current().url
    transport = "redis" if probe.scheme(url) in probe.REDIS_SCHEMES else "amqp"
    backend = None if not results else url if transport == "redis" else broker.current().url
    config = {
        # Every coursekit worker runs with -E; apps also announce each task they send, so that the
        # recorder sees a task from the moment it is published.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "broker_connection_retry_on_startup": True,
        "result_extended": True,  # name, args and worker stored with each result: lessons show them
    }
    config = _merge(config, namespace.celery_config(transport))
    # Each lab app has its own default queue, named after it, so that a worker left running from one lesson
    # never takes another lesson's tasks. (Plain Celery's default queue is called "celery".)
    queue = f"{namespace.prefix()}{name}" if transport == "amqp" else name
    config.update(task_default_queue=queue, task_default_exchange=queue, task_default_routing_key=queue)
    config = _merge(config, settings)
    extra = os.environ.get(WORKER_CONFIG_ENV, "").strip()
    if extra:
        config = _merge(config, json.loads(extra))
    app = CourseCelery(name, broker=url, backend=backend, set_as_current=False)
    app.conf.update(config)
    return app
