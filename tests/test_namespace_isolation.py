"""A learner's own data on the course broker survives a lesson and a reset, byte for byte."""
from __future__ import annotations

import pytest
import redis

import coursekit as ck
from coursekit import namespace, runner
from coursekit.course import ROOT

FOREIGN = {
    "celery": ("rpush", [b'{"body": "someone else\'s task", "headers": {}}', b"second message"]),
    "unacked": ("hset", {b"tag-1": b"their unacked message"}),
    "_kombu.binding.celery": ("sadd", [b"celery\x06\x16\x06\x16celery"]),
    "celery-task-meta-0000": ("set", b'{"status": "SUCCESS", "result": 42}'),
    "app:sessions": ("zadd", {b"user-1": 1.0, b"user-2": 2.0}),
}


def fill(client: redis.Redis) -> None:
    for key, (command, value) in FOREIGN.items():
        if command == "rpush":
            client.rpush(key, *value)
        elif command == "sadd":
            client.sadd(key, *value)
        elif command == "hset":
            client.hset(key, mapping=value)
        elif command == "zadd":
            client.zadd(key, value)
        else:
            client.set(key, value)


def snapshot(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter(count=1000)}


@pytest.mark.notebook
def test_foreign_keys_survive_a_lesson_and_a_reset(private_state, monkeypatch):
    # A private broker, so the foreign keys (a `celery` list among them) never touch the machine's Redis.
    private = ck.up(embedded_only=True)
    monkeypatch.setenv("COURSEKIT_BROKER_URL", private.url)
    client = redis.Redis.from_url(private.url)
    fill(client)
    before = snapshot(client)
    assert set(before) == {k.encode() for k in FOREIGN}

    outcome = runner.run(ROOT / "notebooks" / "01_calling.ipynb")
    assert outcome.ok, outcome.line()
    course_keys = namespace.keys(client)
    assert course_keys, "the lesson left no course keys: it did not run against this broker"
    assert namespace.reset(private.url) == len(course_keys)

    assert snapshot(client) == before
