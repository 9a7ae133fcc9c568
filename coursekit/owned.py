"""What a worker and Flower have in common: a celery subprocess that coursekit started under the owner watchdog
(`launch.command`), in a process group of its own, writing to a log file."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from . import state


class OwnedProcess:
    proc: subprocess.Popen | None = None
    logfile: Path

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def logs(self, tail: int | None = None) -> str:
        return state.read_log(self.logfile, tail)

    def _kill_group(self) -> None:
        """SIGKILL the process and everything in its group (a worker's pool children), then reap it."""
        if self.running:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
