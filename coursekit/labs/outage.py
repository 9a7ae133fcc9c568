"""Chapter 10: broker trouble. One task, `job`, run by workers on a private Redis that the lesson stops and starts.

What ran is written to a tally file, not to Redis: the broker is the thing that goes away, so the witness of what
ran must not live in it. `app_on(url)` gives this lab's app on any broker (a private one); a worker started with
`worker_on(url)` imports this module and, through the environment coursekit gives it, runs on the same broker.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import ran_here

if TYPE_CHECKING:  # pandas is for the notebook's side: a worker importing this lab would pay 0.5 s of CPU for it
    import pandas as pd

NAME = "outage"


def job(n, seconds: float = 0.2, tally: str | None = None) -> int:
    """Work for `seconds`, then append one line to the file `tally`: n, the pid and the Unix time it ended."""
    time.sleep(seconds)
    if tally:
        with open(tally, "a") as out:
            out.write(json.dumps({"n": n, **ran_here()}) + "\n")
    return n


def _register(app):
    app.task(name=f"{__name__}.job")(job)
    return app


def app_on(url: str | None = None, **settings):
    """This lab's app (its queue is `outage`) on the broker at `url` (the course's when None), without results: the
    private broker's restart must not fail a result backend too."""
    from ..app import make_app

    return _register(make_app(NAME, broker_url=url, results=False, **settings))


def worker_on(url: str, **options):
    """A coursekit Worker of this lab on the broker at `url` (not started)."""
    from ..worker import Worker

    worker = Worker(__name__, **options)
    worker.app = app_on(url, **(options.get("config") or {}))
    return worker


def ran(tally) -> list[dict]:
    """The lines of a tally file: one per job that ran to its end."""
    path = Path(tally)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# In a worker, the broker is the one coursekit.Worker put in its environment, taken as it is: a worker may start while
# that broker is down (broker_connection_retry_on_startup), so nothing here may look it up or probe it.
app = app_on(os.environ.get("COURSEKIT_BROKER_URL") or None)


# -- reading what happened ------------------------------------------------------------------------------------------
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): (\w+)/[^\]]*\] (.*)$")
_SAID = [  # what a worker's log line says about its broker connection, as a short name
    ("Connection to broker lost", "connection lost"),
    ("Restoring", "puts back what it held"),
    ("Cannot connect to", "reconnect failed"),
    ("Connected to", "connected"),
    ("Unrecoverable error", "worker gives up"),
]


def connection_lines(log: str) -> "pd.DataFrame":
    """The worker's log lines about its broker connection, one row each: `s` (seconds after the first loss; the
    log's own clock), `says` (a short name), and the line itself (cut), with the retry wait Celery announced on the
    next line ("Trying again in 2.00 seconds... (1/100)") as `next try in s`."""
    import pandas as pd

    rows, lines = [], log.splitlines()
    for i, line in enumerate(lines):
        found = _STAMP.match(line)
        if not found:
            continue
        says = next((name for marker, name in _SAID if marker in found.group(3)), None)
        if says is None:
            continue
        at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        wait = re.match(r"Trying again in ([\d.]+) seconds\.\.\. \((\d+)/(\d+)\)", lines[i + 1] if i + 1 < len(lines)
                        else "")
        rows.append({"at": at, "says": says, "next try in s": float(wait.group(1)) if wait else None,
                     "attempt": f"{wait.group(2)}/{wait.group(3)}" if wait else "",
                     "line": found.group(3)[:90]})
    out = pd.DataFrame(rows, columns=["at", "says", "next try in s", "attempt", "line"])
    lost = out[out.says == "connection lost"]
    t0 = lost["at"].iloc[0] if len(lost) else (out["at"].iloc[0] if len(out) else 0.0)
    out.insert(0, "s", (out.pop("at") - t0).round(2))
    return out


def fates(sent: dict, tally, app, queue: str = NAME) -> "pd.DataFrame":
    """Where each job sent (n -> task id) is now: `ran` (its line is in the tally), `waiting` (in one of the queue's
    lists), `held` (in the `unacked` hash: taken by a worker, neither acknowledged nor given back), or `nowhere`."""
    import pandas as pd

    from .. import whereis

    done = Counter(r["n"] for r in ran(tally))
    waiting, held = whereis.waiting(app), whereis.held(app)
    rows = []
    for n, task_id in sent.items():
        where = ("ran" if done[n] else "waiting" if task_id in waiting else "held" if task_id in held
                 else "nowhere")
        rows.append({"n": n, "where": where, "runs": done[n]})
    return pd.DataFrame(rows)
