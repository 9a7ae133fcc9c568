"""The team table: learners publish their progress under their own namespace as they work, and a facilitator
reads every learner's with one SCAN. Learners are simulated by progress records published under namespaces
derived from this test process's own (`cktest<pid>:`), on the machine's Redis, and removed afterwards."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from coursekit import course, namespace, progress, teamtable
from coursekit.checks import ch01

BASE = namespace.prefix()  # the suite's cktest<pid>:, so the suite's own clean-up covers these keys too


def entry(status: str, minutes_ago: float, hints: int = 0, solution: bool = False, attempts: int = 1) -> dict:
    now = time.time()
    return {"status": status, "attempts": attempts, "hints": hints, "solution": solution,
            "first_seen": now - minutes_ago * 60, "last_seen": now - minutes_ago * 60 / 2,
            "passed_at": now if status == "passed" else None}


def room_now() -> dict:
    """What three learners' progress files would hold, with times counted back from now: built when the test
    runs, not when the module is collected (a parallel run may reach this test minutes after collection)."""
    return {
        "ana": {"00.first_task": entry("passed", 30), "01.countdown": entry("incorrect", 20, hints=2)},
        "bo": {"00.first_task": entry("passed", 25, solution=True), "01.countdown": entry("passed", 4)},
        "cy": {i: entry("given", 2, attempts=0) for i in ("00.first_task", "01.countdown", "01.expires",
                                                           "01.apply_or_async")},
    }


@pytest.fixture
def room(redis_url):
    client = redis.Redis.from_url(redis_url)
    learners = room_now()
    for learner, exercises in learners.items():
        data = {"format": 1, "learner": learner, "exercises": exercises}
        if learner == "cy":
            data["checkpoint"] = {"chapter": "02", "at": time.time()}
        assert teamtable.publish(data, redis_url, prefix=f"{BASE}{learner}:")
    yield redis_url
    client.delete(*[teamtable.key(f"{BASE}{learner}:") for learner in learners])
    client.close()


def test_one_row_per_learner(room):
    table = teamtable.team_table(room, stuck_minutes=10).set_index("learner")
    assert list(table.index) == ["ana", "bo", "cy"]
    total = len(course.exercises())
    ana, bo, cy = (table.loc[name] for name in ("ana", "bo", "cy"))
    assert (ana.chapter, ana.exercise, ana.done, ana.hints, ana.stuck) == ("01", "01.countdown", f"1/{total}", 2, True)
    assert (bo.done, bo.solutions, bo.stuck) == (f"2/{total}", "00.first_task", False)
    assert (cy.chapter, cy.exercise, cy.given, cy.done, cy.stuck) == ("02", "-", 4, f"0/{total}", False)
    assert 0 <= ana.idle_min <= 11
    patient = teamtable.team_table(room, stuck_minutes=30).set_index("learner")
    assert not patient.stuck.any()  # 20 minutes on one exercise is stuck at 10, not at 30


def test_an_empty_room_and_other_keys(redis_url):
    client = redis.Redis.from_url(redis_url)
    mine = teamtable.key(BASE)  # the suite's own progress key: a namespace without a learner is no row
    client.set(mine, "{}")
    client.set(f"{BASE}dan:coursekit:progress:old", "x")  # not a progress key
    try:
        table = teamtable.team_table(redis_url)
        assert table.empty and list(table.columns) == teamtable.COLUMNS
    finally:
        client.delete(mine, f"{BASE}dan:coursekit:progress:old")
        client.close()


def test_checks_and_hints_publish_as_they_happen(private_state, redis_url, tmp_path, monkeypatch):
    learner = f"cktest{os.getpid()}-ana:"  # a namespace of its own; the base is what comes before "ana:"
    monkeypatch.setenv("COURSEKIT_NAMESPACE", learner)
    try:
        ch01.countdown.hint()
        ch01.countdown.check(tmp_path / "empty")  # not attempted: counted as seen, not as work
        row = teamtable.team_table(redis_url, base=f"cktest{os.getpid()}-").set_index("learner").loc["ana"]
        assert (row.chapter, row.exercise, row.hints) == ("01", "01.countdown", 1)
    finally:
        namespace.reset(redis_url)


def test_drill_answers_publish_and_show_in_the_table(private_state, redis_url, monkeypatch):
    """Each drill answer is published as a check is: the table's `drill` column is right/asked, and the answer counts
    as activity for `idle_min`."""
    from types import SimpleNamespace

    from coursekit.drill import records

    learner = f"cktest{os.getpid()}-dee:"
    monkeypatch.setenv("COURSEKIT_NAMESPACE", learner)
    try:
        progress._update("01.countdown", lambda e: e.update(status="incorrect", attempts=1))
        data = progress.load()
        data["exercises"]["01.countdown"]["last_seen"] -= 3600  # the check an hour ago, the drill now
        from coursekit import state

        state.write(progress.FILE, data)
        for right in (True, False, True):
            records.record(SimpleNamespace(id="06.late_child", chapter="06", correct=right))
        row = teamtable.team_table(redis_url, base=f"cktest{os.getpid()}-").set_index("learner").loc["dee"]
        assert row.drill == "2/3" and row.idle_min < 1, row
    finally:
        namespace.reset(redis_url)
    assert teamtable.drill_score({"exercises": {}}) == "-"


def test_a_broker_that_is_down_breaks_no_hint(private_state, monkeypatch):
    monkeypatch.setenv("COURSEKIT_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    begun = time.monotonic()
    assert "Hint 1" in repr(ch01.expires.hint())
    assert time.monotonic() - begun < 1.5
    assert progress.load()["exercises"]["01.expires"]["hints"] == 1  # the local file has it all


def test_cli_table_watch_and_bad_urls(room):
    run = subprocess.run([sys.executable, "-m", "coursekit", "team-table", "--url", room, "--watch", "--every", "1",
                          "--max-runs", "2"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("stuck = last exercise") == 2
    lines = [line for line in run.stdout.splitlines() if line.startswith("ana ")]
    assert len(lines) == 2 and "STUCK" in lines[0]
    for url, says in [("redis://127.0.0.1:1/0", "cannot read the team's progress"),
                      ("redis://nobody:wrong@127.0.0.1:6379/0", "refused the password")]:
        bad = subprocess.run([sys.executable, "-m", "coursekit", "team-table", "--url", url],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and says in bad.stderr and "Fix:" in bad.stderr, bad.stderr
        assert "wrong" not in bad.stderr  # the password is never printed
