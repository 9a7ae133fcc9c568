"""`coursekit bench --json`: start-up and throughput figures, each the median of several runs.

It runs in a namespace and state folder of its own, so it neither sees nor leaves course data.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from . import broker, embedded, namespace

RUNS = 5
LAB = "coursekit.labs.first"


def _median(samples: list[float], digits: int = 4) -> float:
    return round(statistics.median(samples), digits)


def embedded_ready() -> float:
    """Seconds from launching redis-server to its first PONG (the embedded broker's start)."""
    samples = []
    for _ in range(RUNS):
        # Recorded under a name of its own: a learner's embedded broker keeps its record (broker.json).
        record = embedded.start(record_as="bench-redis.json", folder_name="bench-redis")
        samples.append(record["ready_s"])
        embedded.stop(record, record_as="bench-redis.json")
    return _median(samples)


def _ping_until_ready(app, node: str, proc: subprocess.Popen, begun: float, timeout: float = 30) -> float:
    # the same readiness test Worker.wait_until_ready uses, so both figures measure the same thing
    from .defaults import DEFAULTS
    from .worker import answers_ping

    patience = DEFAULTS.ping_timeout_s
    while time.monotonic() - begun < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"bare worker exited with {proc.returncode}")
        if answers_ping(app, node, patience):
            return time.monotonic() - begun
        patience = min(1.0, patience * 1.5)  # as Worker.wait_until_ready waits longer each time
    raise RuntimeError("bare worker did not answer a ping")


def bare_worker_ready(app) -> float:
    """A `celery worker` started by hand with the same options Worker uses, to its first ping."""
    node = f"bare-{os.getpid()}@{socket.gethostname()}"
    cmd = [sys.executable, "-m", "celery", "-A", LAB, "worker", "-E", "-n", node, "-l", "INFO", "-P", "prefork",
           "-c", "1", "--without-mingle"]
    env = dict(os.environ, COURSEKIT_BROKER_URL=str(app.conf.broker_url))
    begun = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        return _ping_until_ready(app, node, proc, begun)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def worker_ready() -> float:
    from .worker import Worker

    w = Worker(LAB)
    try:
        w.start()
        return w.ready_s
    finally:
        w.kill()


def roundtrip_ms(add) -> float:
    samples = []
    for i in range(50):
        begun = time.perf_counter()
        add.delay(i, i).get(timeout=10)
        samples.append((time.perf_counter() - begun) * 1000)
    return _median(samples, 2)


def throughput(noop, concurrency: int, count: int = 500, recorded: bool = False) -> float:
    from .observe import record
    from .worker import Worker

    recorder = record(noop.app) if recorded else None
    try:
        with Worker(LAB, concurrency=concurrency, name=f"bench-c{concurrency}"):
            noop.delay().get(timeout=10)  # warm: the pool has imported the task
            begun = time.perf_counter()
            results = [noop.delay() for _ in range(count)]
            for r in results:
                r.get(timeout=60)
            return round(count / (time.perf_counter() - begun), 1)
    finally:
        if recorder is not None:
            recorder.stop()


def recording_ratio(noop, count: int = 1000, pairs: int = 5) -> float:
    """Throughput of `count` no-op tasks with the recorder on divided by off, run as alternating pairs; the
    median of the pairs' ratios, because this machine's speed drifts by a fifth between runs."""
    ratios = []
    for _ in range(pairs):
        off = throughput(noop, 1, count)
        ratios.append(throughput(noop, 1, count, recorded=True) / off)
    return round(statistics.median(ratios), 3)


def dashboard_cpu_percent(app, nap, seconds: float = 8.0) -> float:
    """CPU of the dashboard's thread at 2 Hz, as % of one core, while tasks keep changing the picture."""
    from .dashboard import Dashboard
    from .observe import record
    from .worker import Worker

    recorder = record(app)
    try:
        with Worker(LAB, concurrency=2):
            board = Dashboard(recorder, hz=2.0, duration=seconds + 5).start()
            begun = time.monotonic()
            while time.monotonic() - begun < seconds:
                nap.delay(0.2)
                time.sleep(0.25)
            wall = time.monotonic() - begun
            board.stop()
        return round(100 * board.cpu_s / wall, 1)
    finally:
        recorder.stop()


def recording_size(app, noop, seconds: float = 30.0, rate: int = 50) -> dict:
    """Record `seconds` of a steady `rate` tasks/s on -c 2, then scale its size to ten minutes."""
    from .observe import record
    from .worker import Worker

    with Worker(LAB, concurrency=2):
        recorder = record(app)
        begun = time.monotonic()
        while time.monotonic() - begun < seconds:
            tick = time.monotonic()
            for _ in range(rate // 10):
                noop.delay()
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        time.sleep(1)
        rec = recorder.stop()
    size = rec.size_bytes()
    return {"recording_mb_10min": round(size * 600 / rec.duration / 2**20, 1),
            "recording_bytes_per_event": round(size / max(1, len(rec.events))),
            "recording_events_per_s": round(len(rec.events) / rec.duration)}


def check_seconds() -> dict:
    """Each exercise's check run against the answers in its solutions notebook (the %%writefile cells)."""
    import nbformat

    from .build import WRITEFILE
    from .checks import all_exercises
    from .course import chapters

    with tempfile.TemporaryDirectory(prefix="coursekit-bench-ws-") as tmp:
        folder = os.path.join(tmp, "workspace")
        os.mkdir(folder)
        for ch in chapters():
            if not ch.path("solutions").exists():
                continue
            for cell in nbformat.read(ch.path("solutions"), as_version=4).cells:
                first, _, body = cell.source.partition("\n")
                if cell.cell_type == "code" and (m := WRITEFILE.match(first)):
                    with open(os.path.join(tmp, m.group(1)), "w") as out:
                        out.write(body)
        seconds = []
        for exercise in all_exercises().values():
            if exercise.broker == "rabbitmq" and broker.rabbitmq() is None:
                continue  # no RabbitMQ here: its checks would only say so
            verdict = exercise.check(folder)
            if not verdict.passed:
                raise RuntimeError(f"the solution of {exercise.id} did not pass: {verdict!r}")
            seconds.append(verdict.seconds)
    return {"check_seconds_median": round(statistics.median(seconds), 2), "check_seconds_max": round(max(seconds), 2)}


def run_all() -> dict:
    saved = {k: os.environ.get(k) for k in ("COURSEKIT_STATE_DIR", "COURSEKIT_NAMESPACE")}
    with tempfile.TemporaryDirectory(prefix="coursekit-bench-") as folder:
        os.environ["COURSEKIT_STATE_DIR"] = folder
        os.environ["COURSEKIT_NAMESPACE"] = f"ckbench{os.getpid()}:"
        try:
            figures = {"embedded_broker_ready_s": embedded_ready()}
            url = broker.up().url
            from .labs.first import add, app, nap, noop

            bare, ours = [], []
            for _ in range(RUNS):  # alternate, so drift in machine speed hits both alike
                bare.append(bare_worker_ready(app))
                ours.append(worker_ready())
            figures.update({
                "worker_ready_s": _median(ours),
                "bare_worker_ready_s": _median(bare),
                "worker_ready_ratio": round(statistics.median(ours) / statistics.median(bare), 3),
            })
            from .worker import Worker

            with Worker(LAB):
                figures["roundtrip_ms_median"] = roundtrip_ms(add)
            figures["noop_tasks_per_s_c1"] = throughput(noop, 1)
            figures["noop_tasks_per_s_c2"] = throughput(noop, 2)
            figures["recording_throughput_ratio"] = recording_ratio(noop)
            figures["dashboard_cpu_percent"] = dashboard_cpu_percent(app, nap)
            figures.update(recording_size(app, noop))
            figures.update(check_seconds())
            figures["broker"] = url
            figures["cpu_count"] = os.cpu_count()
            namespace.reset(url)
        finally:
            broker.down()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return figures
