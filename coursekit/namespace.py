"""The course namespace: a prefix on every key and name the course creates, so that a learner's own data on
the same broker is never read or changed, and a reset deletes the course's keys and nothing else."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .defaults import DEFAULTS
from .errors import CourseError

_PART = r"[A-Za-z0-9_.-]+"
# One part ('celerylab:') or two ('celerylab:ana:', a learner's namespace on a shared broker).
_VALID = re.compile(rf"^{_PART}:(?:{_PART}:)?$")
_LEARNER = re.compile(rf"^{_PART}$")


def learner(environ: Mapping[str, str] | None = None) -> str | None:
    """The learner this process works for: COURSEKIT_LEARNER, else JUPYTERHUB_USER, else None (alone)."""
    env = os.environ if environ is None else environ
    for variable in ("COURSEKIT_LEARNER", "JUPYTERHUB_USER"):
        name = env.get(variable, "").strip()
        if name:
            return check_learner(name, f"{variable}=")
    return None


def check_learner(name: str, where: str = "") -> str:
    """`name` itself when it can be a learner's name; a clear error otherwise."""
    if not _LEARNER.match(name):
        raise CourseError(f"{where}{name!r} is not a usable learner name: it becomes part of Redis key names",
                          fix="use only letters, digits, '_', '.' and '-' (no spaces, no ':'), e.g. ana or ana.b")
    return name


def of_learner(name: str) -> str:
    """The namespace of learner `name` on a shared broker: 'celerylab:ana:'."""
    return f"{DEFAULTS.namespace}{check_learner(name)}:"


def prefix(environ: Mapping[str, str] | None = None) -> str:
    """The namespace that `environ` (default: this process's environment) names: COURSEKIT_NAMESPACE when set,
    else the learner's ('celerylab:ana:'), else the course's ('celerylab:')."""
    env = os.environ if environ is None else environ
    value = env.get("COURSEKIT_NAMESPACE", "").strip()
    if not value:
        name = learner(env)
        value = of_learner(name) if name else DEFAULTS.namespace
    if not _VALID.match(value):
        raise CourseError(f"COURSEKIT_NAMESPACE={value!r} is not a usable namespace",
                          fix="use letters, digits, '_', '.' or '-' followed by ':', e.g. 'celerylab:' "
                              "(or 'celerylab:ana:' for one learner)")
    return value


def celery_config(transport: str, ns: str | None = None) -> dict:
    """Celery settings that keep an app inside the namespace `ns` (default: this process's) on `transport`
    ('redis' or 'amqp')."""
    ns = ns or prefix()
    # The result backend is always Redis; its keys carry the same prefix.
    config: dict = {"result_backend_transport_options": {"global_keyprefix": ns}}
    if transport == "redis":
        # kombu prefixes every key (queues, unacked, bindings) and every pub/sub channel (events, control).
        config["broker_transport_options"] = {"global_keyprefix": ns}
    else:
        # RabbitMQ has no key prefix: name every queue and exchange the app declares.
        # (make_app names each app's default queue the same way)
        config.update(event_exchange=f"{ns}celeryev", control_exchange=f"{ns}celery",
                      event_queue_prefix=f"{ns}celeryev")
    return config


def keys(client) -> list[bytes]:
    """Every key in the namespace. SCAN, not KEYS, so a large foreign keyspace is not blocked."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix()) + "*"
    return list(client.scan_iter(match=pattern, count=1000))


def reset(redis_url: str) -> int:
    """Delete the course's keys on the Redis at `redis_url` and return how many. Nothing else is touched."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        found = keys(client)
        for start in range(0, len(found), 500):
            client.delete(*found[start:start + 500])
        return len(found)
    finally:
        client.close()
