"""One simulated learner for the ten-learner test (test_team.py): run with COURSEKIT_LEARNER and
COURSEKIT_BROKER_URL set to one learner's set-up line. It runs lesson 01's experiments (delay on a worker, a
countdown held by the worker, apply() in this process, each with results and events) and chapter 00's check, and
prints one JSON line of what it saw. (Not chapter 01's countdown check: with ten learners on 2 cores it timed a
correct send at 0.7 s and called it incorrect.)"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import coursekit as ck
from answers import S00, attempt
from coursekit import namespace
from coursekit.checks import all_exercises
from coursekit.labs import calling


def main(tasks: int) -> dict:
    begun = time.monotonic()
    with ck.Worker("coursekit.labs.calling") as worker, ck.record(calling.app) as recorder:
        results = [calling.add.delay(i, 1000) for i in range(tasks)]
        sent = time.time()
        later = calling.stamp.apply_async(countdown=1)  # held by the worker until its eta
        values = [r.get(timeout=60) for r in results]
        held = later.get(timeout=60)["at"] - sent
        here = calling.whereabouts.apply().get()  # eager: in this process, no message
        time.sleep(0.5)
    hosts = {e.get("hostname") for e in recorder.recording.events if e.get("type") == "task-succeeded"}
    exercise = next(ex for ex in all_exercises().values() if ex.module == "ex00_first")
    with tempfile.TemporaryDirectory(prefix="crowd-learner-") as folder:  # each run left ten folders in /tmp
        workspace = Path(folder) / "workspace"
        workspace.mkdir()
        verdict = attempt(workspace, exercise, S00)  # its progress stays published: the test reads the team table
    return {"namespace": namespace.prefix(), "values": values, "expected": [i + 1000 for i in range(tasks)],
            "countdown_held_s": round(held, 2), "apply_ran_here": here["eager"] and here["pid"] == os.getpid(),
            "worker": worker.nodename, "event_hosts": sorted(h for h in hosts if h),
            "check": verdict.passed, "check_status": verdict.status, "check_message": verdict.message[:400],
            "check_id": exercise.id, "seconds": round(time.monotonic() - begun, 2)}


if __name__ == "__main__":
    try:
        print(json.dumps(main(int(sys.argv[1]))))
    finally:
        ck.stop_all()
