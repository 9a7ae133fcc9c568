"""Recordings shipped with the course, for the parts of a lesson whose broker a learner may not have (RabbitMQ).

A lesson that runs an experiment live calls `keep(recording, name)`. That saves nothing in a learner's run; when
the course itself is rebuilt with `make recordings` (which runs those lessons with COURSEKIT_KEEP_RECORDINGS=1 on
a machine that has the broker), it writes `coursekit/recordings/<name>.json`. Where the broker is missing, the
lesson replays that file with `shipped(name)`, and says that it is a replay.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import CourseError
from .observe import Recording, load_recording

FOLDER = Path(__file__).resolve().parent / "recordings"
KEEP_ENV = "COURSEKIT_KEEP_RECORDINGS"


def path(name: str) -> Path:
    return FOLDER / f"{name}.json"


def keep(recording: Recording, name: str, broker: str = "") -> Path | None:
    """Save `recording` as the shipped recording `name` when COURSEKIT_KEEP_RECORDINGS is set (`make
    recordings`); otherwise do nothing. `broker` (e.g. 'RabbitMQ 3.10.8') is kept with it, for the replay's
    label."""
    if not os.environ.get(KEEP_ENV, "").strip():
        return None
    if broker:
        recording.notes.append(f"recorded on {broker}")
    return recording.save(path(name))


def shipped(name: str) -> Recording:
    """The recording `name` shipped with the course."""
    if not path(name).exists():
        raise CourseError(f"the course ships no recording named {name!r} ({path(name)} is missing)",
                          fix="run `make recordings` on a machine with RabbitMQ, or reinstall the course")
    return load_recording(path(name))


def label(recording: Recording) -> str:
    """'a run recorded on 2026-05-01 on RabbitMQ 3.10.8': what a replay says about where it comes from."""
    when = time.strftime("%Y-%m-%d", time.localtime(recording.started_at))
    on = next((n[len("recorded on "):] for n in recording.notes if n.startswith("recorded on ")), "")
    return f"a run recorded on {when}" + (f" on {on}" if on else "")
