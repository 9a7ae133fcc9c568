"""A process that has imported Celery and coursekit once, and forks a child for each request: the child starts with
those imports done. Used for the preflight (learner.Preflight), which otherwise spent about 0.19 s of CPU
importing them for each check, and a test run makes several hundred checks.

Why not multiprocessing's own forkserver: each of its children first re-runs the parent's main script (its
"safe importing of main module" rule), so a learner's script that calls a check at module level would run again
inside every preflight.

The server reads one JSON request per line on its stdin and answers each with the child's pid on its stdout. It
ends when its stdin closes, that is when the process that started it ends, however it died, and each child then
ends too (it watches its parent, as launch.py's processes do). Children are reaped by the kernel (SIGCHLD
ignored); a caller learns that one has ended from a pidfd.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading

PRELOADED = ("coursekit", "coursekit.learner", "celery", "celery.app.task", "kombu.transport.redis",
             "celery.backends.redis")

_lock = threading.Lock()  # one request and its answer at a time, whichever thread asks
_server: subprocess.Popen | None = None


def start(target: str, *args) -> int:
    """Fork a child that calls `target` ("module:function", imported in the child) with `args` (JSON values);
    return its pid. The child starts in the server's working folder and environment: the target sets its own."""
    global _server
    request = json.dumps({"target": target, "args": args}) + "\n"
    with _lock:
        for attempt in (1, 2):  # a server that died (killed from outside) is started again, once
            if _server is None or _server.poll() is not None:
                _server = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                           start_new_session=True)
            try:
                _server.stdin.write(request)
                _server.stdin.flush()
                answer = _server.stdout.readline()
            except (BrokenPipeError, OSError):
                answer = ""
            if answer:
                return int(answer)
            _server.kill()
            _server.wait()
    raise OSError("the fork server did not answer")


def wait(pid: int, timeout: float) -> bool:
    """Whether the child `pid` has ended within `timeout` seconds (it is not our child: a pidfd tells)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(readable)
    finally:
        os.close(fd)


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the learner's process is not for this one
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
    for name in PRELOADED:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)


def _child(request: dict) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # what the target starts, it reaps itself
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The server ends with its owner, and then so does this child (and what it started): launch.py's watch
    threading.Thread(target=_follow_parent, args=(os.getppid(),), daemon=True, name="coursekit-follow-server").start()
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
