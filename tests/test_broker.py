"""Broker resolution, the embedded redis-server, and the course namespace."""
from __future__ import annotations

import os
import socket

import psutil
import pytest
import redis

import coursekit as ck
from coursekit import broker, embedded, namespace, state


def test_empty_env_url_counts_as_unset(monkeypatch, redis_url):
    monkeypatch.setenv("COURSEKIT_BROKER_URL", "   ")
    assert broker.current().source != "env"


def test_env_url_wins_and_is_checked(monkeypatch, redis_url):
    monkeypatch.setenv("COURSEKIT_BROKER_URL", redis_url)
    assert broker.up().source == "env"
    monkeypatch.setenv("COURSEKIT_BROKER_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(ck.BrokerError, match="nothing usable answers at COURSEKIT_BROKER_URL=redis://127.0.0.1:1/0"):
        broker.up()
    monkeypatch.setenv("COURSEKIT_BROKER_URL", "mongodb://127.0.0.1/")
    with pytest.raises(ck.BrokerError, match="scheme 'mongodb'") as err:
        broker.up()
    assert "redis://" in err.value.fix


def test_embedded_start_reuse_stop(private_state):
    first = broker.up(embedded_only=True)
    assert first.source == "embedded" and first.started_by_coursekit
    record = state.read(embedded.STATE_FILE)
    assert psutil.Process(record["pid"]).name().startswith("redis-server")
    assert redis.Redis.from_url(first.url).ping()
    again = broker.up(embedded_only=True)
    assert again.source == "earlier" and again.url == first.url
    assert broker.down() == [f"stopped the embedded Redis on port {record['port']} (pid {record['pid']})"]
    assert not psutil.pid_exists(record["pid"]) or psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
    assert broker.down() == ["nothing to stop: coursekit has no broker running"]


def test_stale_state_file_is_noticed_and_replaced(private_state):
    state.write(embedded.STATE_FILE, {"kind": "embedded", "url": "redis://127.0.0.1:1/0", "port": 1,
                                      "pid": 999999, "started_at": "earlier"})
    fresh = broker.up(embedded_only=True)
    assert fresh.source == "embedded" and fresh.url != "redis://127.0.0.1:1/0"
    assert any("stale state" in note and "port 1" in note for note in fresh.notes)


def test_port_in_use_gives_a_clear_error(private_state):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ck.BrokerError, match=f"port {port} is already in use") as err:
            broker.up(embedded_only=True, port=port)
    assert "--port" in err.value.fix
    assert state.read(embedded.STATE_FILE) is None


def test_second_embedded_port_refused_while_one_runs(private_state):
    running = broker.up(embedded_only=True)
    with pytest.raises(ck.BrokerError, match="already runs an embedded Redis"):
        broker.up(port=running_port(running.url) + 1)
    assert broker.current().url == running.url


def running_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_machine_redis_is_left_alone(private_state):
    machine = redis.Redis(host="127.0.0.1", port=6379)
    before = machine.info("server")["process_id"]
    broker.up(embedded_only=True)
    broker.down()
    assert machine.ping() and machine.info("server")["process_id"] == before


def test_namespace_must_be_well_formed(monkeypatch):
    monkeypatch.setenv("COURSEKIT_NAMESPACE", "no colon")
    with pytest.raises(ck.CourseError, match="not a usable namespace"):
        namespace.prefix()


def test_reset_deletes_only_the_namespace(redis_url, clean_namespace):
    client = redis.Redis.from_url(redis_url)
    ns = namespace.prefix()
    foreign = f"not-{ns}keep"
    client.set(f"{ns}mine", b"1")
    client.set(foreign, b"theirs")
    try:
        assert namespace.reset(redis_url) == 1
        assert client.get(foreign) == b"theirs" and not client.exists(f"{ns}mine")
    finally:
        client.delete(foreign)


def test_rabbitmq_names_carry_the_namespace(rabbitmq_url):
    app = ck.make_app("rabbit-ns", broker_url=rabbitmq_url)
    ns = namespace.prefix()
    assert app.conf.task_default_queue == f"{ns}rabbit-ns"
    assert app.conf.event_exchange == f"{ns}celeryev" and app.conf.control_exchange == f"{ns}celery"
