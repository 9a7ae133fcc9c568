"""Flower, the monitor Celery users already know, watching the course cluster: `coursekit flower`, or
`with ck.Flower() as f:` in a notebook.

Flower loads `coursekit.flower:app`, made by `make_app` like every course app, so it carries the namespace's
broker transport options: kombu's `global_keyprefix` prefixes the pidbox (inspect) and celeryev (events)
channels too, and without it Flower would see none of the course's workers. It sees this namespace's workers
and tasks, and no one else's.

It runs under `coursekit.launch`, as workers do, so it dies with the process that started it. It listens on
127.0.0.1 only, read-only: its buttons that stop workers or revoke tasks are off, which is what makes it safe to
open its HTTP API (/api/workers, /api/tasks) without a password.
"""
from __future__ import annotations

import atexit
import functools
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata

import psutil

from . import broker, census, launch, namespace, probe, state
from .defaults import DEFAULTS
from .errors import CourseError
from .owned import OwnedProcess

_BANNER = re.compile(r"Visit me at http://127\.0\.0\.1:(\d+)")
# Lines Flower logs when it cannot go on, and what to do about each.
_LOG_DIAGNOSES = [
    ("Address already in use", "another program took the port first: start again without --port for a free one"),
    ("No such command 'flower'", "reinstall Flower into this environment: {install}"),
]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through an http_proxy
_live: "set[Flower]" = set()
_live_lock = threading.Lock()


def __getattr__(name: str):
    if name == "app":  # what `celery -A coursekit.flower:app flower` loads, in Flower's process only
        return _course_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _course_app():
    from .app import make_app

    return make_app("flower")


def _install_command() -> str:
    """How to install the Flower this course pins, into the Python that runs coursekit."""
    try:
        pin = next((r.split(";")[0].strip() for r in metadata.requires("coursekit") or []
                    if re.match(r"flower\b", r, re.I)), "flower")
    except metadata.PackageNotFoundError:
        pin = "flower"
    return f"`{sys.executable} -m pip install '{pin}'`"


def require_flower() -> str:
    """Flower's version, or a clear error when this Python cannot import Flower 2.x."""
    try:
        import flower
    except ImportError as exc:
        raise CourseError(f"Flower is not installed where coursekit runs ({exc})",
                          fix=f"install it: {_install_command()}") from None
    version = getattr(flower, "__version__", "")
    if not version.startswith("2."):
        raise CourseError(f"Flower {version or '(unknown version)'} is installed; coursekit runs Flower 2.x",
                          fix=f"install the course's version: {_install_command()}")
    return version


def port_taken(port: int) -> bool:
    """Whether Flower could not bind 127.0.0.1:`port` now (it binds with SO_REUSEADDR, so we do too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Flower(OwnedProcess):
    """Flower on 127.0.0.1 for the course's namespace. `with ck.Flower() as f:`, or start() and stop().
    `port=None` lets the OS pick a free port when Flower binds, so two Flowers never race for one."""

    def __init__(self, port: int | None = None):
        self.asked_port = port
        self.port = port  # the one Flower bound, once it runs
        self.proc: subprocess.Popen | None = None
        self.broker_url: str | None = None
        self.namespace = namespace.prefix()
        self.logfile = state.logs_dir() / f"flower-{os.getpid()}-{id(self):x}.log"

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    def command(self) -> list[str]:
        return launch.command("-A", "coursekit.flower:app", "flower", "--address=127.0.0.1",
                              f"--port={self.asked_port or 0}", "--read_only=True")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(census.marks(census.origin()))  # `coursekit status` lists it as this course's, with its starter
        env["COURSEKIT_BROKER_URL"] = self.broker_url
        env["COURSEKIT_NAMESPACE"] = self.namespace
        env["COURSEKIT_WORKER_CONFIG"] = ""  # a worker's extra settings are not Flower's
        env["FLOWER_UNAUTHENTICATED_API"] = "true"  # safe only because it is read-only and on loopback
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = DEFAULTS.flower_ready_timeout_s) -> "Flower":
        if self.running:
            return self
        require_flower()
        self.port = self.asked_port
        if self.port is not None and port_taken(self.port):
            owner = probe.port_owner(self.port)
            raise CourseError(f"port {self.port} on 127.0.0.1 is taken{f' by {owner}' if owner else ''}",
                              fix="pick another with --port (port= in Python), or leave it out for a free one")
        self.broker_url = broker.current().url  # answers now, or a clear error: Flower would retry forever
        # Its own working folder: Flower reads a flowerconfig.py from where it starts, and no stray one may apply.
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environment(), cwd=state.state_dir(),
                                         start_new_session=True)
        with _live_lock:
            _live.add(self)
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        """Return once Flower answers /healthcheck and listens for events; its log's banner names its port."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._fail(f"Flower exited with code {self.proc.returncode} before it answered")
            if not self.port:
                found = _BANNER.search(self.logs())
                self.port = int(found.group(1)) if found else None
            if self.port and self._healthy() and self._listening():
                return
            if time.monotonic() > deadline:
                self._fail(f"Flower did not answer within {timeout:.0f} s")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            with _DIRECT.open(f"{self.url}/healthcheck", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def _listening(self) -> bool:
        """Whether Flower's event receiver has subscribed yet. Flower answers HTTP before that, and the events of a
        task sent in between are lost to it (Redis pub/sub keeps nothing), so a task sent right after start()
        would be missing from its list. Seen as a Redis client of Flower's process with a (pattern) subscription
        (the course broker is Redis: `broker.current()` finds nothing else).
        """
        import redis

        try:
            ports = {c.laddr.port for c in psutil.Process(self.pid).net_connections(kind="tcp") if c.raddr}
            client = redis.Redis.from_url(self.broker_url, socket_timeout=DEFAULTS.probe_timeout_s)
            try:
                clients = client.client_list()
            finally:
                client.close()
        except (psutil.Error, redis.RedisError):  # no CLIENT LIST (an ACL user): start without this guarantee
            return True
        return any(int(c["addr"].rpartition(":")[2]) in ports and (int(c.get("psub", 0)) or int(c.get("sub", 0)))
                   for c in clients)

    def wait(self) -> int:
        """Block until Flower exits (Ctrl-C in a terminal raises KeyboardInterrupt here); its exit code."""
        return self.proc.wait()

    def stop(self, timeout: float = DEFAULTS.flower_stop_timeout_s) -> None:
        """SIGTERM (Flower shuts down cleanly), then SIGKILL of its group if it lingers."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        self._kill_group()
        with _live_lock:
            _live.discard(self)

    def _fail(self, problem: str) -> None:
        self.kill()
        log = self.logs(tail=15)
        for marker, fix in _LOG_DIAGNOSES:
            if marker in log:  # a known cause: its fix says it all, Flower's traceback would only hide it
                raise CourseError(problem, fix=fix.format(install=_install_command()))
        raise CourseError(problem, fix=f"read Flower's log, {self.logfile}; its last lines:", details=log)

    # -- reading it, as a dashboard or a Prometheus server would -------------------------------------
    def read(self, path: str) -> str:
        """The body of GET `path` (`/api/...`, `/metrics`): Flower runs read-only on loopback, so no password."""
        with _DIRECT.open(f"{self.url}{path}", timeout=10) as reply:
            return reply.read().decode()

    def queue_lengths(self) -> dict[str, int]:
        """/api/queues/length: each queue the workers Flower knows read -> the messages Flower counts in it. Flower
        learns the queues by asking the workers (inspect active_queues), so a worker's queue is missing at first."""
        return {q["name"]: q["messages"] for q in json.loads(self.read("/api/queues/length"))["active_queues"]}

    def metrics(self):
        """/metrics, Flower's Prometheus exporter, as a DataFrame: one row per sample, its `metric`, the labels Flower's
        own metrics use (`worker`, `task`, `type`: None where a metric has no such label; other labels after them)
        and its `value`."""
        import pandas as pd
        from prometheus_client.parser import text_string_to_metric_families

        rows = [{"metric": sample.name, **sample.labels, "value": sample.value}
                for family in text_string_to_metric_families(self.read("/metrics")) for sample in family.samples]
        first = ["metric", "worker", "task", "type"]
        others = sorted({label for row in rows for label in row} - set(first) - {"value"})
        return pd.DataFrame(rows, columns=first + others + ["value"]).astype({"worker": object, "type": object})

    # -- looking at it -------------------------------------------------------------------------------
    def __enter__(self) -> "Flower":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        status = f"running, pid {self.pid}" if self.running else "stopped"
        return f"<Flower {self.url or '(no port yet)'} {status}, namespace {self.namespace}>"

    def _repr_html_(self) -> str:
        if not self.running:
            return f"<code>{html.escape(repr(self))}</code>"
        return (f'Flower for namespace <code>{self.namespace}</code>: <a href="{self.url}" target="_blank">'
                f"{self.url}</a> (pid {self.pid}; <code>.stop()</code> to stop it)")


@atexit.register
def _stop_at_exit() -> None:
    with _live_lock:
        running = list(_live)
    for one in running:
        one.stop(timeout=3)
