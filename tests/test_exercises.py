"""Exercises: the generated notebooks, strict mode, progress and the CLI. The checks themselves, against right and
wrong answers: tests/test_checks.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest
from answers import S01, S02, attempt, swap

from coursekit import build, course, progress
from coursekit.checks import all_exercises, ch00, ch01

AT_ONCE = swap(S01, "add.apply_async((x, y), countdown=2)", "add.delay(x, y)")


@pytest.fixture
def ws(tmp_path, redis_url, clean_namespace):
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


# -- generated notebooks -----------------------------------------------------------------------------------
def test_exercises_folder_is_up_to_date():
    for ch in course.chapters():
        if ch.path("solutions").exists():
            fresh = [c.source for c in build.exercise_notebook(ch.path("solutions")).cells]
            committed = [c.source for c in nbformat.read(ch.path("exercises"), as_version=4).cells]
            assert fresh == committed, f"exercises/{ch.stem}.ipynb is stale: run `coursekit build`"


def test_no_answer_leaks_into_an_exercise():
    for ch in course.chapters():
        if not ch.path("solutions").exists():
            continue
        solution = "\n".join(c.source for c in nbformat.read(ch.path("solutions"), as_version=4).cells)
        exercise = "\n".join(c.source for c in nbformat.read(ch.path("exercises"), as_version=4).cells)
        secrets = build.answers(solution)
        assert secrets, f"solutions/{ch.stem}.ipynb has no ANSWER blocks"
        leaked = [line for line in secrets if line in exercise]
        assert not leaked, f"exercises/{ch.stem}.ipynb shows answer lines: {leaked}"


def test_build_refuses_an_unclosed_answer():
    with pytest.raises(Exception, match="no `# END ANSWER`"):
        build.stub_source("def f():\n    # ANSWER: x\n    return 1\n")


def test_every_exercise_has_hints_and_a_check():
    manifest = course.exercises()
    assert set(manifest) == set(all_exercises())
    assert all(len(entry["hints"]) >= 2 and all(h.strip() for h in entry["hints"]) for entry in manifest.values())
    assert all(entry.get("title", "").strip() and entry.get("praise", "").startswith("Correct")
               for entry in manifest.values())


@pytest.mark.notebook
@pytest.mark.parametrize("path", [ch.path("exercises") for ch in course.chapters() if ch.path("exercises").exists()],
                         ids=lambda p: p.name)
def test_untouched_exercise_notebook_reports_not_attempted(path, tmp_path, redis_url):
    from coursekit import runner

    saved = tmp_path / path.name
    outcome = runner.run(path, save_to=saved)
    assert outcome.ok, outcome.line()
    text = "\n".join(o.get("data", {}).get("text/plain", "") for c in nbformat.read(saved, as_version=4).cells
                     for o in c.get("outputs", []))
    ids = [i for i in all_exercises() if path.stem.startswith(i.split(".")[0])]
    for ex_id in ids:
        assert f"[NOT ATTEMPTED] {ex_id}" in text


def test_solution_text_comes_from_the_solutions_notebook():
    assert "countdown=2" in repr(ch01.countdown.solution())
    assert "@app.task" in repr(ch00.first_task.solution()) and "x * y" in repr(ch00.first_task.solution())


# -- strict mode, progress, CLI (the checks themselves: tests/test_checks.py) ----------------------------------
def test_strict_mode_raises_on_a_wrong_answer(ws, monkeypatch):
    monkeypatch.setenv("COURSEKIT_STRICT", "1")
    with pytest.raises(AssertionError, match="INCORRECT"):
        attempt(ws, ch01.apply_or_async, swap(S01, "whereabouts.apply().get()", "whereabouts()"))
    assert ch01.expires.check(ws.parent / "nowhere").status == "not attempted"  # not attempted never raises


def test_strict_mode_runs_an_uncheckable_check_once_more(monkeypatch):
    """A solutions notebook on a busy machine: the card says "run the check again", so strict mode does, once."""
    from types import SimpleNamespace

    monkeypatch.setenv("COURSEKIT_STRICT", "1")
    for statuses, passes in ((["uncheckable", "passed"], True), (["uncheckable", "uncheckable", "passed"], False),
                             (["incorrect", "passed"], False)):
        given = iter(statuses)
        monkeypatch.setattr(ch01.countdown, "verdict", lambda *a, **k: SimpleNamespace(status=next(given)))
        if passes:
            assert ch01.countdown.check().status == "passed"
        else:
            with pytest.raises(AssertionError):
                ch01.countdown.check()


# -- progress ---------------------------------------------------------------------------------------------
def test_progress_counts_hints_solutions_and_passes(private_state, ws):
    ch01.countdown.hint()
    ch01.countdown.hint(2)
    assert "Hint 2" in repr(ch01.countdown.hint(9))  # tiers clamp to the last one
    ch01.expires.solution()
    attempt(ws, ch01.countdown, AT_ONCE)
    entry = progress.load()["exercises"]["01.countdown"]
    assert entry["status"] == "incorrect" and entry["hints"] == 2 and entry["attempts"] == 1
    verdict = attempt(ws, ch01.countdown, S01)
    if verdict.status == "uncheckable":  # a busy machine (CI at half speed): as its card says, check again
        verdict = attempt(ws, ch01.countdown, S01)
    assert verdict.passed, repr(verdict)
    table = progress.table(progress.load()).set_index("chapter")
    assert table.loc["01_calling", "done"] == "1/3" and table.loc["01_calling", "hints"] == 2
    assert table.loc["01_calling", "solutions"] == 1 and table.loc["00_setup", "done"] == "0/1"


def test_export_and_merge_for_a_facilitator(private_state, tmp_path):
    ch00.first_task.hint()
    mine, _ = progress.export(tmp_path / "ana.json")
    theirs = json.loads(mine.read_text())
    theirs["learner"] = "bo"
    theirs["exercises"]["00.first_task"].update(status="passed", passed_at=theirs["exercises"]["00.first_task"]
                                                ["first_seen"] + 60)
    (tmp_path / "bo.json").write_text(json.dumps(theirs))
    team = progress.merge([tmp_path / "ana.json", tmp_path / "bo.json"]).set_index(["learner", "chapter"])
    assert team.loc[("bo", "00_setup"), "done"] == "1/1" and team.loc[("bo", "00_setup"), "minutes"] == 1.0
    assert (tmp_path / "ana.csv").read_text().startswith("chapter,done,given,hints,solutions,minutes,learner")


def test_progress_text_aligns_each_column_under_its_header():
    frame = progress.table({"exercises": {}})
    lines = progress.as_text(frame).splitlines()
    header = lines[0]
    assert header.startswith("chapter ") and all(line.startswith(frame.chapter[i]) for i, line in
                                                 enumerate(lines[1:]))  # text to the left, under its header
    assert {len(line) for line in lines} == {len(header)}  # numbers to the right: every row ends where it does
    assert progress.as_text(frame.iloc[:0]) == "no exercises in course.toml yet"


def test_cli_check_and_watch(ws):
    (ws / "ex01_calling.py").write_text(AT_ONCE)
    run = subprocess.run([sys.executable, "-m", "coursekit", "check", "01.countdown", "--workspace", str(ws),
                          "--watch", "--max-runs", "1"], capture_output=True, text=True, timeout=60,
                         env=os.environ.copy())
    assert run.returncode == 1 and "[INCORRECT] 01.countdown" in run.stdout
    listing = subprocess.run([sys.executable, "-m", "coursekit", "check", "--list"], capture_output=True, text=True,
                             timeout=30)
    assert listing.returncode == 0 and all(i in listing.stdout for i in all_exercises())
    # a retry with no countdown leaves AsyncResults of tasks that never finished: nothing may print at exit
    (ws / "ex02_retries.py").write_text(swap(S02, ', retry_kwargs={"countdown": 0.2}', ""))
    everything = subprocess.run([sys.executable, "-m", "coursekit", "check", "--all", "--workspace", str(ws)],
                                capture_output=True, text=True, timeout=120)
    assert everything.returncode == 1, everything.stdout + everything.stderr
    assert "[INCORRECT] 01.countdown" in everything.stdout and "[NOT ATTEMPTED] 00.first_task" in everything.stdout
    assert "[INCORRECT] 02.permanent" in everything.stdout
    assert everything.stdout.strip().splitlines()[-1].endswith(f"of {len(all_exercises())} exercises passed")
    assert "Traceback" not in everything.stderr and "Exception ignored" not in everything.stderr, everything.stderr


def test_the_preflight_leaves_no_file_once_read(ws):
    """A check that runs out of its time never reaches close() (its thread is still in the learner's code): the
    preflight's report file must be gone as soon as it has been read."""
    from pathlib import Path

    from coursekit import learner

    (ws / "ex01_calling.py").write_text(S01)
    preflight = learner.Preflight(ws / "ex01_calling.py", "workspace.ex01_calling", 20)
    seen = preflight.result()
    assert "send_later" in seen.names, seen
    assert not Path(preflight._out.name).exists(), "the report file outlived its reading"
    preflight.close()


def test_a_check_never_runs_past_its_time_bound(ws, monkeypatch):
    monkeypatch.setattr(ch01.Countdown, "timeout", 3.0)
    verdict = attempt(ws, ch01.countdown, swap(S01, "return add.apply_async((x, y), countdown=2)",
                                               "import time; time.sleep(10**6)"))
    assert verdict.status == "uncheckable" and "ran out" in verdict.message
    assert verdict.seconds < 4.5
