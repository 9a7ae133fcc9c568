"""A process that has imported Celery and coursekit once, and forks a child for each request: the child starts with
those imports done. Used for the preflight (learner.Preflight), which otherwise spent about 0.19 s of CPU
importing them for each check, and a test run makes several hundred checks.

Why not multiprocessing's own forkserver: each of its children first re-runs the parent's main script (its
"safe importing of main module" rule), so a learner's script that calls a check at module level would run again
inside every preflight.

The server reads one JSON request per line on its stdin and answers each with the request's number and the
child's pid. It ends when its stdin closes, that is when the process that started it ends, however it died, and
each child then ends too (it watches its parent, as launch.py's processes do). Children are reaped by the kernel
(SIGCHLD ignored), so a caller holds a `Child`: a pidfd where Linux has them, which tells when the child has ended
and keeps its pid from being reused while the caller may still signal it.

What a child can tell apart from a fresh `python -m`: Celery and coursekit are in `sys.modules` before its target
runs, and its resource limits are the server's, from when the server started (the target sets the working folder,
environment, import path and argv itself).
"""
from __future__ import annotations

import atexit
import importlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

PRELOADED = ("coursekit", "coursekit.learner", "celery", "celery.app.task", "kombu.transport.redis",
             "celery.backends.redis")
ANSWER_TIMEOUT_S = 30.0
"""How long a request waits for the server's answer; the first one waits for the server's imports too."""

_lock = threading.Lock()  # one request and its answer at a time, whichever thread asks
_server: subprocess.Popen | None = None
_numbers = itertools.count(1)


def _forget_server_in_a_fork() -> None:
    """A forked copy of the owner must not share the owner's server (nor its lock, maybe held mid-request)."""
    global _server, _lock
    _server, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_server_in_a_fork)


@atexit.register
def stop() -> None:
    """End the server now (its stdin closed, as at its owner's death), and wait for it: a normal exit leaves
    nothing running even for the moment the server would take to notice. Its children follow it."""
    global _server
    server, _server = _server, None
    if server is None or server.poll() is not None:
        return
    server.stdin.close()
    try:
        server.wait(2)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


class Child:
    """A child of the server: its pid, and whether it has ended."""

    def __init__(self, pid: int):
        self.pid, self._fd, self._gone = pid, None, False
        try:
            self._fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None  # Linux 5.3 and later
        except ProcessLookupError:  # ended and reaped already
            self._gone = True
        except OSError:  # an old kernel, or a sandbox that forbids it: poll the pid instead
            pass

    def wait(self, timeout: float) -> bool:
        """Whether it has ended within `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.ended():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._fd is not None:
                poller = select.poll()
                poller.register(self._fd, select.POLLIN)
                poller.poll(left * 1000)
            else:
                time.sleep(min(left, 0.02))
        return True

    def ended(self) -> bool:
        if self._gone:
            return True
        if self._fd is not None:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            self._gone = bool(poller.poll(0))
        else:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self._gone = True
        return self._gone

    def kill(self) -> None:
        """SIGKILL it and its session (whatever it started) while it runs; nothing once it has ended."""
        if self.ended():
            return
        for kill in (os.killpg, os.kill):  # before its setsid() it leads no group yet: the pid alone
            try:
                kill(self.pid, signal.SIGKILL)  # not reused: our pidfd holds it (where there are pidfds)
                return
            except (ProcessLookupError, PermissionError):
                continue

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._gone = True


def start(target: str, *args) -> Child:
    """Fork a child that calls `target` ("module:function", imported in the child) with `args` (JSON values).
    The child starts in the server's working folder and environment, with stdin and stdout on /dev/null: the
    target sets up the rest. Raises OSError when the server cannot be started or does not answer."""
    global _server
    with _lock:
        number = next(_numbers)
        request = (json.dumps({"number": number, "target": target, "args": args}) + "\n").encode()
        for attempt in (1, 2):  # a server that died (killed from outside) is started again, once
            if _server is None or _server.poll() is not None:
                _server = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
                                           start_new_session=True)
            try:
                pid = _answer(_server, request, number)
            except BaseException:  # interrupted mid-request: its answer would be read by the next one
                _server.kill()
                _server.wait()
                _server = None
                raise
            if pid is not None:
                return Child(pid)
            _server.kill()
            _server.wait()
    raise OSError("coursekit's fork server did not answer")


def _answer(server: subprocess.Popen, request: bytes, number: int) -> int | None:
    """Send `request`, and read answers until the one for `number`; None when the server is gone or silent."""
    try:
        server.stdin.write(request)
    except OSError:
        return None
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    line = b""
    poller = select.poll()
    poller.register(server.stdout.fileno(), select.POLLIN)
    while time.monotonic() < deadline:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            return None
        chunk = os.read(server.stdout.fileno(), 4096)
        if not chunk:
            return None
        line += chunk
        while b"\n" in line:
            answer, line = line.split(b"\n", 1)
            answered, pid = (int(x) for x in answer.split())
            if answered == number:
                return pid
    return None


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the learner's process is not for this one
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
    for name in PRELOADED:
        importlib.import_module(name)
    server = os.getpid()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request, server)
        print(request["number"], pid, flush=True)


def _child(request: dict, server: int) -> None:
    with open(os.devnull, "r+b") as devnull:  # 0 and 1 are the server's pipes to its owner: never the target's
        os.dup2(devnull.fileno(), 0)
        os.dup2(devnull.fileno(), 1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # what the target starts, it reaps itself
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The server ends with its owner, and then so does this child (and what it started): launch.py's watch
    threading.Thread(target=_follow_parent, args=(server,), daemon=True, name="coursekit-follow-server").start()
    code = 0
    try:
        module, _, function = request["target"].partition(":")
        getattr(importlib.import_module(module), function)(*request["args"])
    except BaseException:  # the target reports what it must itself: this is only a last word, on stderr
        code = 1
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _follow_parent(parent: int) -> None:
    from .defaults import DEFAULTS
    from .launch import _follow_owner

    _follow_owner(parent, DEFAULTS.owner_poll_s)


if __name__ == "__main__":
    _serve()
