"""Learner progress: one small JSON file in the state folder, rewritten whole on every change.

Format 1:
    {"format": 1, "learner": "<login>", "checkpoint": {"chapter": "04", "at": <unix time>} (after a jump),
     "exercises": {"01.countdown": {"status": "passed" | "given" | "incorrect" | "not attempted" | "uncheckable",
                                     "attempts": 3, "hints": 2, "solution": false,
                                     "first_seen": <unix time>, "last_seen": <unix time>, "passed_at": <unix time> | null}}}
`hints` is the highest hint tier shown; `solution` whether the answer was revealed. Time spent on an exercise
runs from its first check or hint to its first pass (or to the last action when not passed).
"given" is an exercise whose answer `coursekit jump` wrote into the workspace: only a real pass upgrades it.
Every change is also published to the broker for a facilitator's team table (teamtable.py), best effort.
"""
from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import state

if TYPE_CHECKING:  # pandas costs every check worker 0.35 s at start (checks.host imports this module)
    import pandas as pd

FILE = "progress.json"
FORMAT = 1
GIVEN = "given"


def load() -> dict:
    data = state.read(FILE)
    if not data or data.get("format") != FORMAT:
        data = {"format": FORMAT, "learner": getpass.getuser(), "exercises": {}}
    return data


def _update(exercise_ids, change, **extra) -> None:
    data = load()
    data.update(extra)
    now = time.time()
    for exercise_id in [exercise_ids] if isinstance(exercise_ids, str) else exercise_ids:
        entry = data["exercises"].setdefault(exercise_id, {"status": "not attempted", "attempts": 0, "hints": 0,
                                                           "solution": False, "first_seen": now, "last_seen": now,
                                                           "passed_at": None})
        change(entry)
        entry["last_seen"] = now
    state.write(FILE, data)
    from .teamtable import publish

    publish(data)  # never raises: a broker that is down costs a refused connection, not the check


def record_check(exercise_id: str, status: str) -> None:
    def change(entry):
        if status != "not attempted":
            entry["attempts"] += 1
        # once passed, a later experiment does not undo it; a given answer stays given until it really passes
        if entry["status"] != "passed" and (entry["status"] != GIVEN or status == "passed"):
            entry["status"] = status
        if status == "passed" and entry["passed_at"] is None:
            entry["passed_at"] = time.time()
    _update(exercise_id, change)


def record_hint(exercise_id: str, tier: int) -> None:
    _update(exercise_id, lambda entry: entry.update(hints=max(entry["hints"], tier)))


def record_solution(exercise_id: str) -> None:
    _update(exercise_id, lambda entry: entry.update(solution=True))


def record_given(exercise_ids: list[str], chapter: str) -> None:
    """Mark exercises whose answers a checkpoint to `chapter` wrote for the learner; a pass already earned is
    kept. The checkpoint itself is recorded too: until the learner touches an exercise, they are on `chapter`."""
    def change(entry):
        if entry["status"] != "passed":
            entry["status"] = GIVEN
    _update(exercise_ids, change, checkpoint={"chapter": chapter, "at": time.time()})


def table(data: dict) -> pd.DataFrame:
    """One row per chapter: exercises passed out of the course's total, answers given by a checkpoint, hints
    used, solutions revealed, minutes."""
    import pandas as pd

    from .course import chapters, exercises

    known = exercises()
    rows = []
    for ch in chapters():
        ids = [i for i in known if i.split(".")[0] == ch.id]
        if not ids:
            continue
        entries = [data["exercises"].get(i) for i in ids]
        seen = [e for e in entries if e]
        minutes = sum(((e["passed_at"] or e["last_seen"]) - e["first_seen"]) for e in seen) / 60
        rows.append({"chapter": ch.stem, "done": f"{sum(e['status'] == 'passed' for e in seen)}/{len(ids)}",
                     "given": sum(e["status"] == GIVEN for e in seen),
                     "hints": sum(e["hints"] for e in seen), "solutions": sum(e["solution"] for e in seen),
                     "minutes": round(minutes, 1)})
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = ["chapter", "done", "given", "hints", "solutions", "minutes"]


MINUTES_NOTE = "minutes: from each exercise's first check or hint to its first pass (or to its last check, if not passed)"


def as_text(frame: pd.DataFrame) -> str:
    """The table for a terminal: text columns aligned left under their headers, numbers right."""
    if frame.empty:
        return "no exercises in course.toml yet"
    from pandas.api.types import is_numeric_dtype

    cells = {c: [str(v) for v in frame[c]] for c in frame.columns}
    width = {c: max(len(c), *map(len, cells[c])) for c in frame.columns}
    left = {c for c in frame.columns if not is_numeric_dtype(frame[c])}

    def line(values: dict) -> str:
        return "  ".join(v.ljust(width[c]) if c in left else v.rjust(width[c]) for c, v in values.items()).rstrip()

    return "\n".join([line({c: c for c in frame.columns})]
                     + [line({c: cells[c][i] for c in frame.columns}) for i in range(len(frame))])


def export(path: str | Path) -> tuple[Path, Path]:
    """Write the progress as JSON (for --merge) and the table as CSV beside it."""
    path = Path(path)
    data = load()
    path.write_text(json.dumps(data, indent=2))
    csv = path.with_suffix(".csv")
    table(data).assign(learner=data["learner"]).to_csv(csv, index=False)
    return path, csv


def merge(paths: list[str | Path]) -> pd.DataFrame:
    """A facilitator's view: one row per learner and chapter, from learners' exported JSON files."""
    import pandas as pd

    frames = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            from .errors import CourseError

            raise CourseError(f"cannot read {p}: {exc}",
                              fix="pass files written by `coursekit progress --export FILE.json`") from None
        frames.append(table(data).assign(learner=data.get("learner", Path(p).stem)))
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return merged[["learner", *COLUMNS]] if frames else merged
