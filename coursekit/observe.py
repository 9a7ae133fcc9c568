"""The recorder: what a cluster did, as pandas DataFrames.

`ck.record(app)` starts two daemon threads. One receives Celery events (task-sent from this process, task-* and
worker-* from coursekit workers, which run with -E); the other samples, at a fixed interval, the depth of each
queue (every priority list plus `unacked` on Redis) and the RSS of every worker process (main and pool children,
so a recycled or killed child appears as a new pid). Stop it to get a `Recording`; `recording.save(path)` and
`load_recording(path)` rebuild the same frames offline.
"""
from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import psutil
from celery import Celery
from celery.signals import before_task_publish

from . import probe

FORMAT = 1


class EventType(str, Enum):
    SENT = "task-sent"
    RECEIVED = "task-received"
    STARTED = "task-started"
    SUCCEEDED = "task-succeeded"
    FAILED = "task-failed"
    RETRIED = "task-retried"
    REVOKED = "task-revoked"
    REJECTED = "task-rejected"
    CHILD = "task-child"  # coursekit's own: sent by the pool child that runs the task, with its pid
    WORKER_ONLINE = "worker-online"
    WORKER_HEARTBEAT = "worker-heartbeat"
    WORKER_OFFLINE = "worker-offline"


STATE_AFTER = {EventType.SENT: "PENDING", EventType.RECEIVED: "RECEIVED", EventType.STARTED: "STARTED",
               EventType.SUCCEEDED: "SUCCESS", EventType.FAILED: "FAILURE", EventType.RETRIED: "RETRY",
               EventType.REVOKED: "REVOKED", EventType.REJECTED: "REJECTED"}
RUN_ENDS = {EventType.SUCCEEDED: "SUCCESS", EventType.FAILED: "FAILURE", EventType.RETRIED: "RETRY"}
TASK_ENDS = {EventType.SUCCEEDED, EventType.FAILED, EventType.REVOKED, EventType.REJECTED}


def next_state(current: str | None, kind: EventType) -> str | None:
    """The state a task is in after an event of `kind`.

    Celery emits task-sent only after publishing, so a fast worker can receive, run and finish a task before the
    sender stamps its task-sent event: in time order task-sent then comes last. A retry's task-sent also follows
    the worker's own events. Either way it says nothing new about the state: it only starts a task at PENDING."""
    if kind is EventType.SENT:
        return current or STATE_AFTER[kind]
    return STATE_AFTER[kind]

TASK_COLUMNS = ["task_id", "name", "args", "queue", "priority", "node", "pid", "sent", "received", "started",
                "finished", "state", "retries", "runtime", "exception"]
RUN_COLUMNS = ["task_id", "name", "attempt", "kind", "node", "pid", "started", "ended", "outcome"]
EVENT_COLUMNS = ["t", "type", "task_id", "node", "pid", "name"]
QUEUE_COLUMNS = ["t", "queue", "depth", "unacked"]
MEMORY_COLUMNS = ["t", "node", "pid", "role", "rss"]


def _short(value, limit: int = 40) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class Recording:
    """Raw observations; every DataFrame is derived from them, so a saved recording replays identically."""

    started_at: float
    events: list[Event] = field(default_factory=list)
    queue_samples: list[tuple] = field(default_factory=list)
    memory_samples: list[tuple] = field(default_factory=list)
    priorities: dict[str, int | None] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    """When this process published each task. Celery emits task-sent only AFTER publishing, so a worker can
    receive a message before the task-sent timestamp; `tasks.sent` uses this publish time when it has one."""
    gaps: list[list[float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: int = 0
    duration: float = 0.0

    def __post_init__(self):
        # a loaded recording holds plain dicts and lists: give them the shapes a live one has
        self.events = [e if isinstance(e, Event) else Event(e) for e in self.events]
        self.queue_samples = [tuple(row) for row in self.queue_samples]
        self.memory_samples = [tuple(row) for row in self.memory_samples]

    # -- frames ----------------------------------------------------------------------------------------
    @property
    def events_df(self) -> pd.DataFrame:
        rows = [{"t": e["t"], "type": e["type"], "task_id": e.get("uuid"), "node": e.get("hostname"),
                 "pid": e.get("pid"), "name": e.get("name")} for e in self.events]
        return pd.DataFrame(rows, columns=EVENT_COLUMNS)

    @property
    def tasks(self) -> pd.DataFrame:
        rows: dict[str, dict] = {}
        for e in sorted(self.events, key=lambda e: e["t"]):
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
        children = self._child_pids()
        for uuid, row in rows.items():
            row["priority"] = self.priorities.get(uuid)
            row["sent"] = self.published.get(uuid, row["sent"])
            row["pid"] = children[uuid][0] if children.get(uuid) else row["pid"]
        return pd.DataFrame(list(rows.values()), columns=TASK_COLUMNS)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per execution attempt: a retry or a redelivery is a new run of the same task id. Copies of one
        task may run at once on different workers (a redelivery), so starts and ends pair up per task and
        worker, in time order (workers buffer events, so arrival order is not time order)."""
        open_runs: dict[tuple, list[dict]] = {}
        attempts: dict[str, int] = {}
        retried: set[str] = set()
        names: dict[str, str] = {}
        out = []
        for e in sorted(self.events, key=lambda e: e["t"]):
            uuid = e.get("uuid")
            if uuid is None:
                continue
            names[uuid] = names.get(uuid) or e.get("name")
            key = (uuid, e.get("hostname"))
            if e["type"] == EventType.STARTED:
                if open_runs.get(key):  # this worker started it again without ending it: that run was lost
                    out += [run | {"outcome": "LOST"} for run in open_runs.pop(key)]
                attempts[uuid] = attempts.get(uuid, 0) + 1
                kind = "first" if attempts[uuid] == 1 else "retry" if uuid in retried else "redelivery"
                retried.discard(uuid)
                open_runs.setdefault(key, []).append(
                    {"task_id": uuid, "name": names[uuid], "attempt": attempts[uuid], "kind": kind,
                     "node": e.get("hostname"), "pid": e.get("pid"), "started": e["t"], "ended": None})
            elif e["type"] in RUN_ENDS.keys() and open_runs.get(key):
                run = open_runs[key].pop(0)
                run.update(ended=e["t"], outcome=RUN_ENDS[EventType(e["type"])])
                out.append(run)
                if e["type"] == EventType.RETRIED:
                    retried.add(uuid)
        out += [run | {"outcome": "RUNNING"} for runs in open_runs.values() for run in runs]
        out.sort(key=lambda r: r["started"])
        children = self._child_pids()
        for run in out:  # the n-th task-child event of a task id names the pool child of its n-th run
            pids = children.get(run["task_id"], [])
            if len(pids) >= run["attempt"]:
                run["pid"] = pids[run["attempt"] - 1]
        return pd.DataFrame(out, columns=RUN_COLUMNS)

    def _child_pids(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for e in sorted((e for e in self.events if e["type"] == EventType.CHILD), key=lambda e: e["t"]):
            found.setdefault(e["uuid"], []).append(e["child_pid"])
        return found

    def state_changes(self) -> list[tuple[float, str, str]]:
        """(t, task id, state after) for every event that moves a task, in time order."""
        out, current = [], {}
        for e in sorted(self.events, key=lambda e: e["t"]):
            if e.get("uuid") and e["type"] in STATE_AFTER.keys():
                current[e["uuid"]] = next_state(current.get(e["uuid"]), EventType(e["type"]))
                out.append((e["t"], e["uuid"], current[e["uuid"]]))
        return out

    def settled(self, task_ids) -> bool:
        """True when every run of these tasks has ended and each task has its final event (success, failure,
        revocation), as far as the events received so far tell."""
        wanted = set(task_ids)
        open_runs: dict[tuple, int] = {}
        ended: set[str] = set()
        for e in self.events:
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

    @property
    def queues(self) -> pd.DataFrame:
        return pd.DataFrame(self.queue_samples, columns=QUEUE_COLUMNS)

    @property
    def memory(self) -> pd.DataFrame:
        return pd.DataFrame(self.memory_samples, columns=MEMORY_COLUMNS)

    def max_overlap(self) -> int:
        """The most runs in progress at the same instant."""
        edges = []
        for run in self.runs.itertuples():
            end = run.ended if pd.notna(run.ended) else self.duration
            edges += [(run.started, 1), (end, -1)]
        level = peak = 0
        for _, step in sorted(edges, key=lambda x: (x[0], x[1])):  # an end before a start at the same instant
            level += step
            peak = max(peak, level)
        return peak

    def size_bytes(self) -> int:
        """Memory the raw observations hold, each object counted once (shared strings too)."""
        seen: set[int] = set()

        def size(obj) -> int:
            if id(obj) in seen:
                return 0
            seen.add(id(obj))
            return sys.getsizeof(obj)

        total = 0
        for container in (self.events, self.queue_samples, self.memory_samples, self.priorities, self.published):
            total += size(container)
            for item in container:
                total += size(item)
                parts = item if isinstance(item, tuple) else [item.get(k) for k in Event.__slots__] \
                    if isinstance(item, Event) else [container[item]]
                total += sum(size(part) for part in parts)
        return total

    # -- save and replay -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}
        data["events"] = [e.as_dict() for e in self.events]
        path.write_text(json.dumps(data, default=str))
        return path

    def __repr__(self) -> str:
        return (f"<Recording {self.duration:.1f} s: {len(self.events)} events, {len(self.tasks)} tasks, "
                f"{len(self.queue_samples)} queue samples, {len(self.memory_samples)} memory samples>")


def _decode(data: bytes) -> list[dict]:
    """A kombu message as published on Redis pub/sub -> the Celery events in its body (JSON serializer only).
    Workers buffer task events and publish several in one message, as a list."""
    try:
        envelope = json.loads(data)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (ValueError, KeyError, TypeError):
        return []
    events = decoded if isinstance(decoded, list) else [decoded]
    return [e for e in events if isinstance(e, dict) and "type" in e]


# Event fields the frames use; the rest (kwargs, results, tracebacks, clocks, load averages) is not kept, so a
# long recording stays small.
KEPT_FIELDS = ("type", "uuid", "hostname", "pid", "name", "args", "queue", "routing_key", "runtime",
               "exception", "retries", "child_pid")
_SHARED = ("type", "uuid", "hostname", "name", "queue", "routing_key")  # repeated across events: one copy each


class Event:
    """One kept event: about 200 bytes instead of ~1 KB for the decoded dict (slots, shared strings).
    Read it like the dict it came from: `e["type"]`, `e.get("uuid")`."""

    __slots__ = ("t", *KEPT_FIELDS)

    def __init__(self, fields: dict):
        for key in self.__slots__:
            value = fields.get(key)
            if value is not None:
                setattr(self, key, sys.intern(value) if key in _SHARED and isinstance(value, str) else value)

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def __getitem__(self, key: str):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__ if hasattr(self, k)}

    def __repr__(self) -> str:
        return f"Event({self.as_dict()})"


def load_recording(path: str | Path) -> Recording:
    data = json.loads(Path(path).read_text())
    if data.pop("format", None) != FORMAT:
        raise ValueError(f"{path} is not a coursekit recording of format {FORMAT}")
    return Recording(**data)


class Recorder:
    """Records `app`'s cluster until `stop()`. Use `ck.record(app)` or `with ck.record(app) as rec:`."""

    def __init__(self, app: Celery, queues: list[str] | None = None, interval: float = 0.25,
                 max_events: int = 150_000, max_samples: int = 50_000):
        # Caps keep any recording under ~50 MB: ~285 bytes an event (measured), ~120 a sample. At 50 tasks/s
        # (about 230 events/s) ten minutes fit under the cap; a flood hits it, and later events are counted
        # in `dropped` instead of kept.
        self.app, self.interval = app, interval
        self.max_events, self.max_samples = max_events, max_samples
        self.watched = list(queues or [app.conf.task_default_queue])
        self.recording = Recording(started_at=time.time())
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._receiver = None
        self._threads: list[threading.Thread] = []
        self._nodes: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> "Recorder":
        before_task_publish.connect(self._on_publish, weak=False)
        for target in (self._listen, self._sample):
            thread = threading.Thread(target=target, daemon=True, name=f"coursekit-{target.__name__[1:]}")
            thread.start()
            self._threads.append(thread)
        if not self._listening.wait(timeout):
            self._note("the event receiver could not connect to the broker; events are missing")
        time.sleep(0.1)  # Redis pub/sub subscribes on the receiver's first poll: let it happen
        return self

    def stop(self) -> Recording:
        ended = self.now()  # the recording ends now, not when the threads have finished winding down
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        for thread in self._threads:
            thread.join(timeout=3)
        before_task_publish.disconnect(self._on_publish)
        rec = self.recording
        with self._lock:
            rec.duration = ended
            for gap in rec.gaps:
                if gap[1] is None:
                    gap[1] = rec.duration
            if not any(e["type"].startswith("worker-") or e["type"] == EventType.STARTED for e in rec.events):
                self._note("no worker sent events while recording: start one with ck.Worker(...) "
                           "(coursekit workers run with -E) before or during the recording")
        return rec

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the recording started: the time axis of every frame and plot."""
        return time.time() - self.recording.started_at

    def settle(self, *results, timeout: float = 5.0) -> Recording:
        """Wait until the recording holds the end of every run of these tasks (AsyncResults or ids), and return
        it. A result can be ready before the worker's events about it arrive: workers send events in batches."""
        ids = {getattr(r, "id", r) for r in results}
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = self.recording.settled(ids)
            if done:
                return self.recording
            if time.monotonic() > deadline:
                self._note(f"events about {len(ids)} task(s) were still missing after {timeout:.0f} s")
                return self.recording
            time.sleep(0.05)

    def _note(self, text: str) -> None:
        if text not in self.recording.notes:
            self.recording.notes.append(text)

    def _gap(self, opening: bool) -> None:
        gaps = self.recording.gaps
        if opening and (not gaps or gaps[-1][1] is not None):
            gaps.append([self.now(), None])
            self._note("the broker went away during the recording; the gap is in `recording.gaps`")
        elif not opening and gaps and gaps[-1][1] is None:
            gaps[-1][1] = self.now()

    # -- events --------------------------------------------------------------------------------------
    def _on_publish(self, sender=None, headers=None, properties=None, **_):
        # Priority travels in message properties, which task-sent events do not carry.
        if headers and "id" in headers:
            with self._lock:
                self.recording.priorities[headers["id"]] = (properties or {}).get("priority")
                self.recording.published[headers["id"]] = self.now()

    def _on_event(self, raw: dict) -> None:
        fields = {k: raw[k] for k in KEPT_FIELDS if k in raw}
        for key, limit in (("args", 120), ("exception", 300)):
            if isinstance(fields.get(key), str) and len(fields[key]) > limit:
                fields[key] = fields[key][:limit - 1] + "…"
        fields["t"] = float(raw.get("timestamp") or time.time()) - self.recording.started_at
        event = Event(fields)
        with self._lock:
            if event["type"].startswith("worker-") and event.get("pid"):
                self._nodes[event["hostname"]] = event["pid"]
            if len(self.recording.events) >= self.max_events:
                self.recording.dropped += 1
                self._note(f"more than {self.max_events} events: later ones were dropped (see `dropped`)")
                return
            self.recording.events.append(event)

    def _listen(self) -> None:
        redis_broker = probe.scheme(str(self.app.conf.broker_url)) in probe.REDIS_SCHEMES
        listen = self._listen_redis if redis_broker else self._listen_kombu
        while not self._stopping.is_set():
            try:
                listen()
            except Exception:  # the broker went away: note the gap, then reconnect
                if self._stopping.is_set():
                    return
                with self._lock:
                    self._gap(True)
                self._stopping.wait(0.5)

    def _connected(self) -> None:
        self._listening.set()
        with self._lock:
            self._gap(False)

    def _listen_kombu(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self._receiver.on_consume_ready = lambda *a, **k: self._connected()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _listen_redis(self) -> None:
        """On Redis, events are plain pub/sub messages on `<prefix>/<db>.celeryev/<routing key>`. Reading them
        with redis-py and decoding the JSON here costs a fraction of kombu's generic receiver, and the recorder
        runs in the same process as the code that sends tasks."""
        import redis

        url = str(self.app.conf.broker_url)
        prefix = (self.app.conf.broker_transport_options or {}).get("global_keyprefix", "")
        db = urlparse(url).path.strip("/") or "0"
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        pubsub = client.pubsub()
        try:
            pubsub.psubscribe(f"{prefix}/{db}.{self.app.conf.event_exchange}/*")
            confirmed = time.monotonic() + 5
            while pubsub.get_message(timeout=0.5) is None:  # the subscription is live once Redis confirms it
                if time.monotonic() > confirmed:
                    raise redis.TimeoutError("no psubscribe confirmation")
            self._connected()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None and message["type"] == "pmessage":
                    for event in _decode(message["data"]):
                        self._on_event(event)
        finally:
            pubsub.close()
            client.close()

    # -- samples -------------------------------------------------------------------------------------
    def _sample(self) -> None:
        conn = None
        while not self._stopping.is_set():
            tick = time.monotonic()
            try:
                if conn is None:
                    conn = self.app.connection_for_read()
                    conn.ensure_connection(max_retries=1)
                self._sample_queues(conn)
            except Exception:
                if conn is not None:
                    conn.release()
                conn = None
                with self._lock:
                    self._gap(True)
            self._sample_memory()
            with self._lock:
                self.recording.duration = self.now()  # while live, the duration so far
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - tick)))
        if conn is not None:
            conn.release()

    def _sample_queues(self, conn) -> None:
        channel = conn.default_channel
        redis = conn.transport.driver_type == "redis"
        with self._lock:
            seen = {e.get("queue") or e.get("routing_key") for e in self.recording.events[-200:]
                    if e["type"] == EventType.SENT}
        for queue in sorted(seen - {None} - set(self.watched)):
            self.watched.append(queue)
        unacked = int(channel.client.hlen("unacked")) if redis else None
        now = self.now()
        rows = []
        for queue in self.watched:
            if redis:
                depth = int(channel._size(queue))  # every priority list, prefix applied (see queues.depth)
            else:
                try:
                    depth = channel.queue_declare(queue, passive=True).message_count
                except conn.channel_errors:
                    depth = 0
            rows.append((now, queue, depth, unacked))
        self._append(self.recording.queue_samples, rows)

    def _sample_memory(self) -> None:
        from .worker import live_workers

        mains = {w.nodename: w.pid for w in live_workers()}
        with self._lock:
            mains.update(self._nodes)
        host = socket.gethostname()
        now = self.now()
        rows = []
        for node, pid in mains.items():
            if not node.endswith("@" + host):
                continue  # another machine's worker: its memory is not ours to read
            try:
                main = psutil.Process(pid)
                rows.append((now, node, pid, "main", main.memory_info().rss))
                for child in main.children():
                    rows.append((now, node, child.pid, "child", child.memory_info().rss))
            except psutil.Error:
                continue
        self._append(self.recording.memory_samples, rows)

    def _append(self, target: list, rows: list) -> None:
        with self._lock:
            room = self.max_samples - len(target)
            if room < len(rows):
                self._note(f"more than {self.max_samples} samples: sampling stopped there")
            target.extend(rows[:max(room, 0)])


def record(app: Celery, **options) -> Recorder:
    """Start recording `app`'s cluster now. Start it before the workers to see them come online."""
    return Recorder(app, **options).start()
