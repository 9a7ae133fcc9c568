"""Celery's events as the recorder keeps them: their types, the task state each one leads to, and `Event`, the
compact form a recording holds. No pandas here: the frames are built elsewhere (`frames`)."""
from __future__ import annotations

import base64
import json
import sys
from enum import Enum


class EventType(str, Enum):
    SENT = "task-sent"
    RECEIVED = "task-received"
    STARTED = "task-started"
    SUCCEEDED = "task-succeeded"
    FAILED = "task-failed"
    RETRIED = "task-retried"
    REVOKED = "task-revoked"
    REJECTED = "task-rejected"
    CHILD = "task-child"  # coursekit's own: sent by the pool child that runs the task, with its pid
    WORKER_ONLINE = "worker-online"
    WORKER_HEARTBEAT = "worker-heartbeat"
    WORKER_OFFLINE = "worker-offline"


STATE_AFTER = {EventType.SENT: "PENDING", EventType.RECEIVED: "RECEIVED", EventType.STARTED: "STARTED",
               EventType.SUCCEEDED: "SUCCESS", EventType.FAILED: "FAILURE", EventType.RETRIED: "RETRY",
               EventType.REVOKED: "REVOKED", EventType.REJECTED: "REJECTED"}
RUN_ENDS = {EventType.SUCCEEDED: "SUCCESS", EventType.FAILED: "FAILURE", EventType.RETRIED: "RETRY",
            EventType.REVOKED: "REVOKED"}  # revoked while running: revoke(terminate=True) ended the run
TASK_ENDS = {EventType.SUCCEEDED, EventType.FAILED, EventType.REVOKED, EventType.REJECTED}


def next_state(current: str | None, kind: EventType) -> str | None:
    """The state a task is in after an event of `kind`.

    Celery emits task-sent only after publishing, so a fast worker can receive, run and finish a task before the
    sender stamps its task-sent event: in time order task-sent then comes last. A retry's task-sent also follows
    the worker's own events. Either way it says nothing new about the state: it only starts a task at PENDING."""
    if kind is EventType.SENT:
        return current or STATE_AFTER[kind]
    return STATE_AFTER[kind]


def decode(data: bytes) -> list[dict]:
    """A kombu message as published on Redis pub/sub -> the Celery events in its body (JSON serializer only).
    Workers buffer task events and publish several in one message, as a list."""
    try:
        envelope = json.loads(data)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (ValueError, KeyError, TypeError):
        return []
    events = decoded if isinstance(decoded, list) else [decoded]
    return [e for e in events if isinstance(e, dict) and "type" in e]


# Event fields the frames use; the rest (kwargs, results, tracebacks, clocks, load averages) is not kept, so a
# long recording stays small.
KEPT_FIELDS = ("type", "uuid", "hostname", "pid", "name", "args", "queue", "routing_key", "runtime",
               "exception", "retries", "child_pid")
_SHARED = ("type", "uuid", "hostname", "name", "queue", "routing_key")  # repeated across events: one copy each


class Event:
    """One kept event: about 200 bytes instead of ~1 KB for the decoded dict (slots, shared strings).
    Read it like the dict it came from: `e["type"]`, `e.get("uuid")`."""

    __slots__ = ("t", *KEPT_FIELDS)

    def __init__(self, fields: dict):
        for key in self.__slots__:
            value = fields.get(key)
            if value is not None:
                setattr(self, key, sys.intern(value) if key in _SHARED and isinstance(value, str) else value)

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def __getitem__(self, key: str):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if hasattr(self, k)}

    def __repr__(self) -> str:
        return f"Event({self.as_dict()})"
