"""The recorder: `ck.record(app)` starts two daemon threads. One captures Celery events (task-sent from this
process, task-* and worker-* from coursekit workers, which run with -E); the other samples queue depths and
worker memory and CPU use at a fixed interval (`samplers`). `stop()` gives the `Recording`."""
from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

from celery import Celery
from celery.signals import before_task_publish

from .. import probe
from . import samplers
from .events import KEPT_FIELDS, Event, EventType, decode
from .recording import Recording


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
        self._cpu_read: dict[int, tuple] = {}  # pid -> (t, CPU seconds) at the last sample, for the next delta

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> "Recorder":
        before_task_publish.connect(self._on_publish, weak=False)
        watch = [self._watch_broker] if probe.scheme(str(self.app.conf.broker_url)) in probe.REDIS_SCHEMES else []
        for target in (self._listen, self._sample, *watch):
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
                message = pubsub.get_message(timeout=0.1)  # the wait `stop()` pays: every check stops a recorder
                if message is not None and message["type"] == "pmessage":
                    for event in decode(message["data"]):
                        self._on_event(event)
        finally:
            pubsub.close()
            client.close()

    # -- samples -------------------------------------------------------------------------------------
    def _broker_probe(self):
        """On Redis, a client that asks once and never retries: redis-py (6 and later) retries a lost connection
        by itself for seconds, and kombu's channel and the event listener with it, so neither raised during a 3 s
        outage and the recording showed no gap (seen on CI). None on other brokers."""
        if probe.scheme(str(self.app.conf.broker_url)) not in probe.REDIS_SCHEMES:
            return None
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis.from_url(str(self.app.conf.broker_url), socket_connect_timeout=0.5, socket_timeout=0.5,
                                    retry=Retry(NoBackoff(), 0))

    def _watch_broker(self) -> None:
        """Its own thread: the sampler's kombu call can sit through a whole outage inside redis-py's retries."""
        ping = self._broker_probe()
        while not self._stopping.is_set():
            tick = time.monotonic()
            try:
                ping.ping()
                answered = True
            except Exception:
                answered = False
            with self._lock:
                self._gap(not answered)  # a gap opens when the broker stops answering, and ends when it answers
            self._stopping.wait(max(0.0, min(self.interval, 0.1) - (time.monotonic() - tick)))
        ping.close()

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
            self._sample_processes()
            with self._lock:
                self.recording.duration = self.now()  # while live, the duration so far
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - tick)))
        if conn is not None:
            conn.release()

    def _sample_queues(self, conn) -> None:
        with self._lock:  # a queue the recording saw a task sent to is watched from then on
            seen = {e.get("queue") or e.get("routing_key") for e in self.recording.events[-200:]
                    if e["type"] == EventType.SENT}
        for queue in sorted(seen - {None} - set(self.watched)):
            self.watched.append(queue)
        totals, lists = samplers.queue_depths(conn, self.watched, self.now())
        self._append(self.recording.queue_samples, totals)
        self._append(self.recording.list_samples, lists, "priority-list ")

    def _sample_processes(self) -> None:
        from ..worker import live_workers

        mains = {w.nodename: w.pid for w in live_workers()}
        with self._lock:
            mains.update(self._nodes)
        memory, cpu = samplers.worker_usage(mains, self.now, self._cpu_read)
        self._append(self.recording.memory_samples, memory)
        self._append(self.recording.cpu_samples, cpu, "CPU ")

    def _append(self, target: list, rows: list, what: str = "") -> None:
        with self._lock:
            room = self.max_samples - len(target)
            if room < len(rows):
                self._note(f"more than {self.max_samples} {what}samples: sampling stopped there")
            target.extend(rows[:max(room, 0)])


def record(app: Celery, **options) -> Recorder:
    """Start recording `app`'s cluster now. Start it before the workers to see them come online."""
    return Recorder(app, **options).start()
