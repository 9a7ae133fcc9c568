"""The per-user state folder: what coursekit started (broker.json), broker data and worker logs.

COURSEKIT_STATE_DIR overrides the location; tests point it at a temporary folder.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import platformdirs


def location(environ: Mapping[str, str] | None = None) -> Path:
    """The state folder that `environ` (default: this process's environment) points at; not created."""
    override = (os.environ if environ is None else environ).get("COURSEKIT_STATE_DIR", "").strip()
    return Path(override) if override else Path(platformdirs.user_state_dir("coursekit"))


def state_dir() -> Path:
    path = location()
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path


def read_log(path: Path, tail: int | None = None) -> str:
    """A log file's text (its last `tail` lines), or "" while the process has not written it yet."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-tail:]) if tail else text


def read(name: str) -> dict | None:
    """The JSON record `name`, or None when it is missing or unreadable (a crash mid-write)."""
    try:
        return json.loads((state_dir() / name).read_text())
    except (OSError, ValueError):
        return None


def write(name: str, record: dict, private: bool = False) -> None:
    """Rewrite the whole record atomically, so a crash never leaves half a file. A `private` record (it holds a
    password) is readable by this user only from its first byte on."""
    target = state_dir() / name
    # A temporary file of this writer's own (two kernels may write one record at once), made 0600 by mkstemp.
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(json.dumps(record, indent=2))
    if not private:
        os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def remove(name: str) -> None:
    try:
        (state_dir() / name).unlink()
    except FileNotFoundError:
        pass
