"""Reachability probes: does something answer at this URL, and is it what we expect? Each is time-bounded."""
from __future__ import annotations

import shutil
import socket
import subprocess
from urllib.parse import urlparse

from .defaults import DEFAULTS

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "pyamqp", "amqps")


def scheme(url: str) -> str:
    return urlparse(url).scheme.lower()


def port_of(url: str) -> int | None:
    return urlparse(url).port


def redis_answers(url: str, timeout: float = DEFAULTS.probe_timeout_s) -> str | None:
    """None when Redis answers PING at `url`, otherwise the reason it does not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except redis.AuthenticationError as exc:
        return f"Redis refused the credentials ({exc})"
    except redis.ResponseError as exc:
        return f"Redis answered with an error ({exc})"
    except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def redis_namespace_refused(url: str, prefix: str, timeout: float = DEFAULTS.probe_timeout_s) -> str | None:
    """None when the user of `url` may use keys under `prefix`, otherwise Redis's refusal (NOPERM) as text.
    On a shared broker each learner's ACL user may touch only its own namespace."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            client.exists(f"{prefix}coursekit:probe")
        return None
    except redis.ResponseError as exc:  # NoPermissionError is one
        return f"Redis answered with an error ({exc})"
    except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def safe(url: str) -> str:
    """`url` with its password masked: a shared broker's URL carries the learner's password."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def amqp_answers(url: str, timeout: float = DEFAULTS.probe_timeout_s * 2) -> str | None:
    """None when an AMQP broker completes a handshake at `url`, otherwise the reason it does not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return None
    except Exception as exc:  # kombu wraps socket, auth and protocol errors in several types
        return str(exc) or type(exc).__name__


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port nobody listens on now. The caller retries if someone takes it first."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_owner(port: int) -> str:
    """Who listens on `port`, as 'pid N (name)', or '' when the OS will not say."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return ""


def docker_engine_answers(timeout: float = 5.0) -> bool:
    """True only when a Docker engine runs; a lone docker client answers `--version` but not `info`."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())
