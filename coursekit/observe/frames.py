"""The DataFrames a recording shows, each built from its raw events alone, so that a saved recording replays
identically: one row per event, per task, per run (an attempt), and what is derived from the runs."""
from __future__ import annotations

import pandas as pd

from .events import RUN_ENDS, STATE_AFTER, TASK_ENDS, Event, EventType, next_state

TASK_COLUMNS = ["task_id", "name", "args", "queue", "priority", "node", "pid", "sent", "received", "started",
                "finished", "state", "retries", "runtime", "exception"]
RUN_COLUMNS = ["task_id", "name", "attempt", "kind", "node", "pid", "started", "ended", "outcome"]
EVENT_COLUMNS = ["t", "type", "task_id", "node", "pid", "name"]
QUEUE_COLUMNS = ["t", "queue", "depth", "unacked"]
LIST_COLUMNS = ["t", "queue", "priority", "depth"]
MEMORY_COLUMNS = ["t", "node", "pid", "role", "rss"]
CPU_COLUMNS = ["t", "node", "cpu_s", "cores"]


def _short(value, limit: int = 40) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _in_time_order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e["t"])  # workers buffer events: arrival order is not time order


def events_frame(events: list[Event]) -> pd.DataFrame:
    rows = [{"t": e["t"], "type": e["type"], "task_id": e.get("uuid"), "node": e.get("hostname"),
             "pid": e.get("pid"), "name": e.get("name")} for e in events]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def child_pids(events: list[Event]) -> dict[str, list[int]]:
    """Task id -> the pids of the pool children that ran it, one per run, in time order."""
    found: dict[str, list[int]] = {}
    for e in _in_time_order([e for e in events if e["type"] == EventType.CHILD]):
        found.setdefault(e["uuid"], []).append(e["child_pid"])
    return found


def tasks_frame(events: list[Event], priorities: dict, published: dict) -> pd.DataFrame:
    """One row per task id: when it was sent, received, started and finished, where, and how it ended."""
    rows: dict[str, dict] = {}
    for e in _in_time_order(events):
        kind, uuid = e["type"], e.get("uuid")
        if uuid is None or kind not in STATE_AFTER.keys():
            continue
        kind = EventType(kind)
        row = rows.setdefault(uuid, {c: None for c in TASK_COLUMNS} | {"task_id": uuid, "retries": 0})
        row["name"] = row["name"] or e.get("name")
        if kind is EventType.SENT:
            row.update(sent=e["t"], args=_short(e.get("args")), queue=e.get("queue") or e.get("routing_key"))
        elif kind is EventType.RECEIVED:
            row["received"] = row["received"] if row["received"] is not None else e["t"]
            row["node"] = e.get("hostname")
            row["args"] = row["args"] or _short(e.get("args"))
        elif kind is EventType.STARTED:
            row["started"] = row["started"] if row["started"] is not None else e["t"]
            row.update(node=e.get("hostname"), pid=e.get("pid"))
        elif kind is EventType.RETRIED:
            row["retries"] += 1
            row["exception"] = e.get("exception")
        else:
            row.update(finished=e["t"], runtime=e.get("runtime"), exception=e.get("exception"))
        row["state"] = next_state(row["state"], kind)
    children = child_pids(events)
    for uuid, row in rows.items():
        row["priority"] = priorities.get(uuid)
        row["sent"] = published.get(uuid, row["sent"])
        row["pid"] = children[uuid][0] if children.get(uuid) else row["pid"]
    return pd.DataFrame(list(rows.values()), columns=TASK_COLUMNS)


def runs_frame(events: list[Event]) -> pd.DataFrame:
    """One row per execution attempt: a retry or a redelivery is a new run of the same task id. Copies of one
    task may run at once on different workers (a redelivery), so starts and ends pair up per task and worker, in
    time order; where one worker has two runs of a task open at once, `_ending` says which one an end closes."""
    open_runs: dict[tuple, list[dict]] = {}
    received: dict[tuple, list[int | None]] = {}  # per task and worker, the `retries` of each delivery not started
    attempts: dict[str, int] = {}
    last_start: dict[tuple, float] = {}
    names: dict[str, str] = {}
    out = []
    for e in _in_time_order(events):
        uuid = e.get("uuid")
        if uuid is None:
            continue
        names[uuid] = names.get(uuid) or e.get("name")
        key = (uuid, e.get("hostname"))
        if e["type"] == EventType.RECEIVED:
            received.setdefault(key, []).append(e.get("retries"))
        elif e["type"] == EventType.STARTED:
            attempts[uuid] = attempts.get(uuid, 0) + 1
            last_start[key] = e["t"]
            open_runs.setdefault(key, []).append(
                {"task_id": uuid, "name": names[uuid], "attempt": attempts[uuid], "kind": None,
                 "node": e.get("hostname"), "pid": e.get("pid"), "started": e["t"], "ended": None,
                 "retries": received[key].pop(0) if received.get(key) else None})
        elif e["type"] in RUN_ENDS.keys() and open_runs.get(key):
            run = open_runs[key].pop(_ending(open_runs[key], e))
            run.update(ended=e["t"], outcome=RUN_ENDS[EventType(e["type"])])
            out.append(run)
    for key, runs in open_runs.items():  # no end: lost if the worker started the task again later, else running
        out += [run | {"outcome": "LOST" if run["started"] < last_start[key] else "RUNNING"} for run in runs]
    out.sort(key=lambda r: r["started"])
    _name_kinds(out)
    children = child_pids(events)
    for run in out:  # the n-th task-child event of a task id names the pool child of its n-th run
        pids = children.get(run["task_id"], [])
        if len(pids) >= run["attempt"]:
            run["pid"] = pids[run["attempt"] - 1]
    return pd.DataFrame(out, columns=RUN_COLUMNS)


def _ending(runs: list[dict], end: Event) -> int:
    """Which of one worker's open runs of a task (in start order) `end` closes.
    - A success carries its runtime: the run that started closest to `end` minus it (copies that overlap, a
      redelivery past visibility_timeout beside the first copy, end in any order).
    - A retry comes from the run with the fewest retries so far (a retry due at once can start, on another pool
      child, before the worker reports the retry that asked for it); of equals, the latest, since an earlier one
      with no end was lost (its child killed and the message requeued: no end event is sent). With no `retries`
      known (the deliveries came before the recording), the earliest.
    - Any other end closes the latest run, for the same reason."""
    if len(runs) == 1:
        return 0
    if end["type"] == EventType.SUCCEEDED and end.get("runtime") is not None:
        began = end["t"] - end["runtime"]
        return min(range(len(runs)), key=lambda i: abs(runs[i]["started"] - began))
    if end["type"] == EventType.RETRIED:
        if any(run["retries"] is None for run in runs):
            return 0
        fewest = min(run["retries"] for run in runs)
        return max(i for i, run in enumerate(runs) if run["retries"] == fewest)
    return len(runs) - 1


def _name_kinds(runs: list[dict]) -> None:
    """Each run (in start order) is a task's "first", a "retry", or else a "redelivery" (the same message again).
    A retry is a delivery with more `retries` than any before it; where a run's `retries` is not known, a retry is
    a run that a run ending in RETRY asked for. Not judged on event order: a retry due at once can start before
    the task-retried event of the run that asked for it."""
    owed: dict[str, int] = {}  # retries asked for and not yet seen to start, per task id
    most: dict[str, int | None] = {}  # the most `retries` seen so far, per task id (None: not known)
    for run in sorted(runs, key=lambda r: r["started"]):
        uuid, retries = run["task_id"], run.pop("retries", None)
        if uuid not in owed:
            run["kind"], owed[uuid], most[uuid] = "first", 0, retries
        elif retries is not None and most[uuid] is not None:
            run["kind"] = "retry" if retries > most[uuid] else "redelivery"
            owed[uuid] = max(0, owed[uuid] - (run["kind"] == "retry"))
            most[uuid] = max(most[uuid], retries)
        elif owed[uuid]:
            run["kind"] = "retry"
            owed[uuid] -= 1
        else:
            run["kind"] = "redelivery"
        owed[uuid] += run["outcome"] == "RETRY"


def state_changes(events: list[Event]) -> list[tuple[float, str, str]]:
    """(t, task id, state after) for every event that moves a task, in time order."""
    out, current = [], {}
    for e in _in_time_order(events):
        if e.get("uuid") and e["type"] in STATE_AFTER.keys():
            current[e["uuid"]] = next_state(current.get(e["uuid"]), EventType(e["type"]))
            out.append((e["t"], e["uuid"], current[e["uuid"]]))
    return out


def settled(events: list[Event], task_ids) -> bool:
    """True when every run of these tasks has ended and each task has its final event (success, failure,
    revocation), as far as these events tell."""
    wanted = set(task_ids)
    open_runs: dict[tuple, int] = {}
    ended: set[str] = set()
    for e in events:
        uuid = e.get("uuid")
        if uuid not in wanted:
            continue
        key = (uuid, e.get("hostname"))
        if e["type"] == EventType.STARTED:
            open_runs[key] = open_runs.get(key, 0) + 1
        elif e["type"] in RUN_ENDS.keys():
            open_runs[key] = open_runs.get(key, 0) - 1
        if e["type"] in TASK_ENDS:
            ended.add(uuid)
    return ended == wanted and all(n <= 0 for n in open_runs.values())


def max_overlap(runs: pd.DataFrame, duration: float) -> int:
    """The most runs in progress at the same instant (a run still going ends at `duration`)."""
    edges = []
    for run in runs.itertuples():
        end = run.ended if pd.notna(run.ended) else duration
        edges += [(run.started, 1), (end, -1)]
    level = peak = 0
    for _, step in sorted(edges, key=lambda x: (x[0], x[1])):  # an end before a start at the same instant
        level += step
        peak = max(peak, level)
    return peak
