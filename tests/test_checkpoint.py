"""Checkpoints: `coursekit jump NN` writes every earlier exercise's answer, marks it given, and keeps the learner's
own modules; a real check still judges a given exercise, and only a pass changes it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit import checkpoint, course, progress
from coursekit.build import module_text
from coursekit.checks import all_exercises, ch04
from coursekit.errors import CourseError


def coursekit(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursekit", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def ids_before(chapter: str) -> list[str]:
    return [i for i in course.exercises() if i.split(".")[0] < chapter]


def test_jump_04_then_chapter_04(private_state, tmp_path, redis_url, clean_namespace):
    ws = tmp_path / "workspace"
    run = coursekit("jump", "04", "--workspace", str(ws))
    assert run.returncode == 0, run.stderr
    assert "ready for chapter 04" in run.stdout
    known = all_exercises()
    for ex_id in ids_before("04"):  # every earlier module holds exactly what the solutions notebook writes
        module = known[ex_id].module
        assert (ws / f"{module}.py").read_text() == module_text(module), module
    assert not any((ws / f"{known[i].module}.py").exists() for i in course.exercises() if i.startswith("04."))
    entries = progress.load()["exercises"]
    assert {i: entries[i]["status"] for i in ids_before("04")} == {i: "given" for i in ids_before("04")}
    assert not any(i.startswith("04.") for i in entries)
    # chapter 04's check finds the workspace ready: its own module is the learner's to write, nothing is broken
    assert ch04.tiers.check(ws).status == "not attempted"
    table = progress.table(progress.load()).set_index("chapter")
    assert table.loc["01_calling", "given"] == 3 and table.loc["01_calling", "done"] == "0/3"
    shown = coursekit("progress").stdout
    assert "given" in shown.splitlines()[0] and "given: answers `coursekit jump` wrote" in shown


def test_a_given_exercise_is_still_judged_and_a_pass_makes_it_passed(private_state, tmp_path, redis_url,
                                                                     clean_namespace):
    ws = tmp_path / "workspace"
    checkpoint.jump("01", ws)
    assert progress.load()["exercises"]["00.first_task"]["status"] == "given"
    progress.record_check("00.first_task", "incorrect")  # a failed check does not take back what was given...
    assert progress.load()["exercises"]["00.first_task"]["status"] == "given"
    run = coursekit("check", "00.first_task", "--workspace", str(ws))
    assert run.returncode == 0 and "PASSED" in run.stdout.upper(), run.stdout + run.stderr
    assert progress.load()["exercises"]["00.first_task"]["status"] == "passed"  # ...a real pass upgrades it
    checkpoint.jump("02", ws)  # and a later jump never demotes a pass
    statuses = {i: e["status"] for i, e in progress.load()["exercises"].items()}
    assert statuses["00.first_task"] == "passed" and statuses["01.countdown"] == "given"
    assert "00.first_task          passed" in coursekit("check", "--list").stdout


def test_jump_keeps_the_learners_own_module(private_state, tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    mine = "# my own try\n"
    (ws / "ex01_calling.py").write_text(mine)
    (ws / "ex00_first.py").write_text(module_text("ex00_first"))  # already the answer: left alone
    done = checkpoint.jump("02", ws)
    backups = list(ws.glob("ex01_calling.py.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == mine
    assert (ws / "ex01_calling.py").read_text() == module_text("ex01_calling")
    assert f"kept your version of ex01_calling.py as {backups[0].name}" in done.lines()
    assert done.unchanged == [ws / "ex00_first.py"] and not list(ws.glob("ex00_first.py.bak-*"))
    again = checkpoint.jump("02", ws)  # twice in a row: nothing written, nothing copied
    assert not again.written and not again.backups and len(list(ws.glob("*.bak-*"))) == 1


def test_chapter_names_and_the_first_chapter(private_state, tmp_path):
    assert checkpoint.chapter_id("4") == checkpoint.chapter_id("04_priorities") == "04"
    done = checkpoint.jump("00", tmp_path / "ws")
    assert not done.given and done.lines() == ["chapter 00 is the first: nothing to give"]


@pytest.mark.parametrize(("args", "says"), [
    (["jump", "99"], "no chapter '99' in course.toml"),
    (["jump", "priorities"], "no chapter 'priorities' in course.toml"),
    (["jump", "04", "--workspace", "{file}"], "is a file, not a folder"),
    (["jump", "04", "--workspace", "{file}/workspace"], "cannot create the workspace"),
])
def test_bad_input_gets_a_clear_message(private_state, tmp_path, args, says):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    run = coursekit(*[a.format(file=afile) for a in args], cwd=tmp_path)
    assert run.returncode == 2 and says in run.stderr and "Fix:" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "workspace").exists()
    assert afile.read_text() == "not a folder"


def test_unwritable_workspace(private_state, tmp_path):
    if os.geteuid() == 0:  # root writes through any mode bits; the kernel's own folders still refuse it
        folder = Path("/sys/kernel")
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
    run = coursekit("jump", "02", "--workspace", str(folder))
    assert run.returncode == 2 and "is not writable" in run.stderr and "Fix:" in run.stderr, run.stderr
