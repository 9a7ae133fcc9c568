"""coursekit.Beat: a real `celery beat` subprocess, ready at its first send, that dies with its owner."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from test_worker import group_alive, wait_until

import coursekit as ck
from coursekit.labs import periodic

LAB = "coursekit.labs.periodic"


def every(seconds: float, entry: str = "t") -> dict:
    return {"beat_schedule": {entry: {"task": periodic.tick.name, "schedule": seconds, "args": [entry]}}}


def test_ready_at_first_send_and_a_worker_runs_what_it_sends(clean_namespace):
    ledger = ck.Ledger("ticks")
    ledger.clear()
    with ck.Worker(LAB), ck.Beat(LAB, config=every(1.0)) as beat:
        assert len(beat.sends()) >= 1 and 0.5 < beat.first_sent_s < 10  # one interval after start, not at once
        assert beat.schedule_file.parent.name.startswith(beat.name) and beat.schedule_file.parent.is_dir()
        assert wait_until(lambda: ledger.counts()["t"] >= 2, timeout=10), ledger.counts()
    assert not beat.running and beat.proc.returncode == 0
    assert group_alive(beat.pid) == []
    out, err = beat.logs(stream="stdout"), beat.logs(stream="stderr")
    assert "celery beat v" in out and "Sending due task t" in err and "Sending due task" not in out
    assert any(p.name.startswith("celerybeat-schedule") for p in beat.schedule_file.parent.iterdir())
    assert {s["entry"] for s in beat.sends()} == {"t"} and {s["task"] for s in beat.sends()} == {periodic.tick.name}
    ledger.clear()


def test_stop_all_stops_beats_too(clean_namespace):
    """ck.stop_all() with no list means every worker and every beat this process started."""
    worker, beat = ck.Worker(LAB).start(), ck.Beat(LAB, config=every(1.0)).start()
    ck.stop_all()
    assert not worker.running and not beat.running and beat.proc.returncode == 0
    assert group_alive(beat.pid) == []


def test_nothing_due_is_a_clear_error(clean_namespace):
    beat = ck.Beat(LAB, config=every(600.0))
    with pytest.raises(ck.WorkerError, match="sent no message within 2 s") as err:
        beat.start(timeout=2)
    assert "due sooner" in err.value.fix and not beat.running


def test_beat_follows_its_owner_even_when_sigkilled(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import coursekit as ck
        b = ck.Beat({LAB!r}, config={every(1.0)!r}).start()
        print(b.pid, flush=True)
        time.sleep(120)
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        beat_pid = int(owner.stdout.readline())
        assert group_alive(beat_pid), "beat should run while its owner lives"
        owner.kill()
        owner.wait(5)
        assert wait_until(lambda: group_alive(beat_pid) == [], timeout=5), group_alive(beat_pid)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_restarted_beat_waits_for_its_own_first_send(clean_namespace):
    beat = ck.Beat(LAB, config=every(1.0))
    beat.start()
    first, sent = beat.began(), len(beat.sends())
    beat.stop()
    beat.start()  # same log file, appended to: ready only once this life has sent
    try:
        assert beat.began() > first and len(beat.sends()) > sent, (first, beat.began(), beat.sends())
    finally:
        beat.stop()
