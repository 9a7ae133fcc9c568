"""The team table: every learner's progress, published under their own namespace, read by a facilitator.

A learner's progress (progress.py) is copied, on every change, to the key `<their namespace>coursekit:progress`
on the broker they already use. Nothing else is needed on their side, and under `coursekit team up` the key sits
inside the prefix their ACL user may write. The facilitator finds every such key with one SCAN (never KEYS: it
would block a busy shared Redis) and turns each into one row: chapter, passed out of total, hints, solutions
looked at, minutes since the last action, and whether the learner seems stuck.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING

from .defaults import DEFAULTS
from .errors import CourseError

if TYPE_CHECKING:
    import pandas as pd

KEY = "coursekit:progress"
KEEP_S = 24 * 3600  # yesterday's room does not crowd today's table; any action publishes the whole record again
COLUMNS = ["learner", "chapter", "exercise", "done", "given", "hints", "solutions", "drill", "idle_min", "stuck"]
CLOSED = ("passed", "given")


def key(prefix: str | None = None) -> str:
    from . import namespace

    return f"{prefix or namespace.prefix()}{KEY}"


def _worked_on(entry: dict) -> bool:
    """A check with an answer written, a hint or a solution: running an untouched exercise notebook checks every
    exercise in it ("not attempted"), which says nothing about where the learner is."""
    return bool(entry["attempts"] or entry["hints"] or entry["solution"]) and entry["status"] != "given"


def card(data: dict) -> dict:
    """What is published: the whole progress record, plus the facts a facilitator reads at a glance. The current
    exercise is the last one worked on; its chapter, or after a checkpoint with no work since, the chapter
    jumped to."""
    exercises = data.get("exercises", {})
    worked = {i: e for i, e in exercises.items() if _worked_on(e)}
    current = max(worked, key=lambda i: worked[i]["last_seen"]) if worked else None
    latest = max(exercises, key=lambda i: exercises[i]["last_seen"]) if exercises else None
    jumped = data.get("checkpoint")
    if jumped and (current is None or jumped["at"] > worked[current]["last_seen"]):
        current, chapter = None, jumped["chapter"]
    else:
        chapter = (current or latest or "").split(".")[0] or None  # no work yet: the notebook last run
    drilled = [e["last"] for e in data.get("drill", {}).values() if e.get("last")]
    moments = ([exercises[latest]["last_seen"]] if latest else []) + drilled  # an answer in the drill is activity
    return {**data, "current": current, "chapter": chapter,
            "last_activity": max(moments) if moments else None,
            "passed": [i for i, e in exercises.items() if e["status"] == "passed"],
            "hints": sum(e["hints"] for e in exercises.values()),
            "solutions": [i for i, e in exercises.items() if e["solution"]]}


def publish(data: dict, url: str | None = None, prefix: str | None = None) -> bool:
    """Copy `data` to the broker; True when it got there. Never raises and never waits long: progress is
    published from inside checks and hints, which must work with the broker down."""
    try:
        import redis

        if url is None:
            from . import broker

            url = broker.current().url  # the learner's own broker; probing a closed port fails at once
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            client.set(key(prefix), json.dumps(card(data)), ex=KEEP_S)
        finally:
            client.close()
        return True
    except Exception:  # no broker, a wall (NOPERM), a bad namespace: the local progress file still holds it all
        return False


def _base(base: str | None) -> str:
    """The namespace the learners' prefixes start with: the facilitator's own, not one a learner name derives."""
    return base or os.environ.get("COURSEKIT_NAMESPACE", "").strip() or DEFAULTS.namespace


def _client(redis_url: str | None):
    import redis

    from . import broker

    url = redis_url or broker.current().url
    return url, redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def read_all(redis_url: str | None = None, base: str | None = None) -> dict[str, dict]:
    """Learner name -> their published record, for every learner under `base` on the broker."""
    import redis
    from .probe import safe

    base = _base(base)
    url, client = _client(redis_url)
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", base) + "*:" + KEY
    try:
        names = sorted(client.scan_iter(match=pattern, count=500))
        values = client.mget(names) if names else []
    except redis.AuthenticationError as exc:
        raise CourseError(f"the broker at {safe(url)} refused the password: {exc}",
                          fix="use the facilitator URL that `coursekit team up` printed") from None
    except redis.exceptions.NoPermissionError as exc:
        raise CourseError(f"this user may not read learners' progress on {safe(url)}: {exc}",
                          fix="use the facilitator URL that `coursekit team up` printed, not a learner's") from None
    except redis.RedisError as exc:
        raise CourseError(f"cannot read the team's progress from {safe(url)}: {exc}",
                          fix="start the shared broker (`coursekit team up`) or pass its URL with --url") from None
    finally:
        client.close()
    found = {}
    for name, value in zip(names, values):
        learner = name.decode()[len(base):-len(KEY)].rstrip(":")
        try:
            found[learner] = json.loads(value)
        except (TypeError, ValueError):  # expired between SCAN and MGET, or not ours
            continue
    return found


def team_table(redis_url: str | None = None, stuck_minutes: float = 10, base: str | None = None,
               now: float | None = None) -> pd.DataFrame:
    """One row per learner. `stuck` marks a learner whose last exercise is neither passed nor given and was
    first tried more than `stuck_minutes` ago."""
    import pandas as pd

    from .course import exercises as manifest

    now = time.time() if now is None else now
    total = len(manifest())
    rows = []
    for learner, record in read_all(redis_url, base).items():
        exercises = record.get("exercises", {})
        current = record.get("current")
        entry = exercises.get(current, {})
        last = record.get("last_activity")
        rows.append({"learner": learner, "chapter": record.get("chapter") or "-", "exercise": current or "-",
                     "done": f"{sum(e['status'] == 'passed' for e in exercises.values())}/{total}",
                     "given": sum(e["status"] == "given" for e in exercises.values()),
                     "hints": sum(e["hints"] for e in exercises.values()),
                     "solutions": ", ".join(i for i, e in exercises.items() if e["solution"]),
                     "drill": drill_score(record),
                     "idle_min": round((now - last) / 60, 1) if last else None,
                     "stuck": bool(entry) and entry["status"] not in CLOSED
                     and now - entry["first_seen"] > stuck_minutes * 60})
    return pd.DataFrame(rows, columns=COLUMNS)


def drill_score(record: dict) -> str:
    """The learner's interview drill so far, as "right/asked" over every answer given ("-": not drilled)."""
    answers = record.get("drill", {}).values()
    asked = sum(e.get("asked", 0) for e in answers)
    return f"{sum(e.get('right', 0) for e in answers)}/{asked}" if asked else "-"


def as_html(frame: pd.DataFrame, stuck_minutes: float) -> str:
    """The table for the notebook, stuck learners in bold red, with the time it was read."""
    if frame.empty:
        body = "<p>No learner has published progress yet: they appear after their first check or hint.</p>"
    else:
        styled = frame.style.apply(lambda row: ["color: #b00020; font-weight: bold" if row["stuck"] else ""]
                                   * len(row), axis=1).hide(axis="index")
        body = styled.to_html()
    return (f"{body}<p style='color: #666'>read {time.strftime('%H:%M:%S')}; stuck = last exercise tried for more "
            f"than {stuck_minutes:g} min and not passed</p>")


def live(redis_url: str | None = None, stuck_minutes: float = 10, every_s: float = 5, for_minutes: float = 120,
         base: str | None = None):
    """An ipywidgets HTML that a daemon thread refreshes every `every_s` seconds, for `for_minutes` at most (a
    forgotten tab stops polling the shared broker; a headless run ends with its kernel)."""
    import ipywidgets

    view = ipywidgets.HTML()

    def draw() -> None:
        try:
            view.value = as_html(team_table(redis_url, stuck_minutes, base), stuck_minutes)
        except CourseError as exc:  # the broker gone mid-session: say so, keep trying
            view.value = f"<p style='color: #b00020'>{exc.problem}. Fix: {exc.fix}</p>"

    def loop() -> None:
        end = time.monotonic() + for_minutes * 60
        while time.monotonic() < end:
            time.sleep(every_s)
            draw()
        view.value += f"<p>stopped refreshing after {for_minutes:g} min: run the cell again</p>"

    draw()
    threading.Thread(target=loop, daemon=True, name="team-table").start()
    return view
