"""A child's stdout and stderr, kept apart and together.

Celery writes its banner to stdout and every log record to stderr, and a logging set-up of one's own may move
either. A lesson that teaches this must say which stream a line went to, so a `Worker` does not hand its child one
log file: it reads both pipes here and writes each line twice, to the stream's own file and, in arrival order, to
the combined log that `logs()` has always shown.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

STREAMS = ("stdout", "stderr")


def stream_file(logfile: Path, stream: str) -> Path:
    """Where one stream of the process logging to `logfile` is kept: `w1-123-1.log` -> `w1-123-1.stderr.log`."""
    return logfile.with_suffix(f".{stream}{logfile.suffix}")


class Copier:
    """Two threads, one per pipe. They end by themselves when every process holding the pipe has exited."""

    def __init__(self, proc: subprocess.Popen, logfile: Path):
        self.logfile = logfile
        self._lock = threading.Lock()  # one line at a time into the combined log
        self._combined = open(logfile, "ab", buffering=0)
        self._threads = []
        self._open = len(STREAMS)  # pipes not yet at their end; the last one closes the combined log
        for stream in STREAMS:
            pipe = getattr(proc, stream)
            own = open(stream_file(logfile, stream), "ab", buffering=0)
            thread = threading.Thread(target=self._copy, args=(pipe, own), daemon=True,
                                      name=f"copy {stream} of {logfile.name}")
            thread.start()
            self._threads.append(thread)

    def _copy(self, pipe, own) -> None:
        try:
            with pipe, own:
                for line in iter(pipe.readline, b""):
                    if not line.endswith(b"\n"):  # the last line, cut off: keep it off the other stream's next one
                        line += b"\n"
                    try:
                        own.write(line)
                        with self._lock:
                            self._combined.write(line)
                    except (OSError, ValueError):  # a full disk: lose the line, but keep reading, or the worker
                        pass  # would block once the pipe's buffer is full
        finally:
            with self._lock:
                self._open -= 1
                if not self._open:
                    self._combined.close()

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait (`timeout` in all) until what the process wrote before it exited is in the files; False if a pipe is
        still open then (a process the worker started that outlives it holds it)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
