"""The drill as a learner meets it: `coursekit drill` in a terminal (bad input, Ctrl-C with the score so far, no worker
left behind), the progress that makes the next drill ask the weakest topics first, and the mock interview's
report in JSON and Markdown, in both languages."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from procs import wait_until_gone

from coursekit import progress
from coursekit.drill import bank, records, report, session
from coursekit.drill.session import Drill, Outcome

QUESTIONS = bank.load()
BY_ID = {q.id: q for q in QUESTIONS}


class Terminal:
    """`coursekit drill ...` in a subprocess with its stdin and stdout piped, read as it writes (prompts end
    without a newline, so the output is read byte by byte in a thread)."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "coursekit", "drill", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.text, self._bytes = "", queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while chunk := self.proc.stdout.read1(4096):
            self._bytes.put(chunk)

    def wait_for(self, text: str, seconds: float = 20) -> str:
        deadline = time.monotonic() + seconds
        while text not in self.text:
            try:
                self.text += self._bytes.get(timeout=max(0.01, deadline - time.monotonic())).decode(errors="replace")
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {seconds} s; the drill wrote:\n{self.text}") from None
        return self.text

    def type(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, seconds: float = 20) -> int:
        code = self.proc.wait(seconds)
        self.wait_for("score", 1)
        while not self._bytes.empty():
            self.text += self._bytes.get().decode(errors="replace")
        return code


def workers_of(pid: int) -> list[psutil.Process]:
    """Celery processes started by the process `pid` (its workers and their pool children)."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.is_running()]
    except psutil.NoSuchProcess:
        return []


def course_workers() -> list[psutil.Process]:
    """Celery workers of this test process's state folder, whoever started them."""
    state = os.environ["COURSEKIT_STATE_DIR"]
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "celery" in " ".join(p.info["cmdline"] or []) and "worker" in (p.info["cmdline"] or []) \
                    and p.environ().get("COURSEKIT_STATE_DIR") == state and p.pid != os.getpid():
                found.append(p)
        except psutil.Error:
            continue
    return found


# -- the terminal ----------------------------------------------------------------------------------------------
def test_ctrl_c_ends_the_drill_with_the_score_so_far_and_no_worker_left(redis_url):
    before = {p.pid for p in course_workers()}
    term = Terminal("--chapter", "05", "--seconds", "120")
    term.wait_for("your answer")
    term.type("maybe")  # not a letter: a message, the same question again, nothing recorded
    term.wait_for("unknown choice 'maybe'")
    term.type("b")  # WARNING: right
    term.wait_for("observed WARNING")
    term.wait_for("[2/4]")
    spawned = [p.pid for p in workers_of(term.proc.pid)]
    assert spawned, "the drill ran its experiment on a worker of its own"
    term.wait_for("your answer")
    term.proc.send_signal(signal.SIGINT)
    assert term.finish() == 0
    assert "stopped." in term.text and "score: 1/1" in term.text, term.text
    assert "Traceback" not in term.text
    left = wait_until_gone(lambda: [p for p in course_workers() if p.pid not in before], seconds=5)
    assert not left, f"workers outlived the drill: {[p.pid for p in left]}"


def test_an_unknown_chapter_is_a_message_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "coursekit", "drill", "--chapter", "42"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "no drill questions for chapter '42'" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_end_of_input_ends_the_drill_like_ctrl_c():
    out = subprocess.run([sys.executable, "-m", "coursekit", "drill", "--chapter", "04", "--lang", "zh"],
                         input="", capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "已停止" in out.stdout and "得分：0/0" in out.stdout, out.stdout + out.stderr
    assert BY_ID["04.order"].question_zh in out.stdout


# -- progress: weakest topics first ----------------------------------------------------------------------------
def outcome(qid: str, correct: bool) -> Outcome:
    q = BY_ID[qid]
    return Outcome(q.id, q.chapter, q.kind, q.answer if correct else None, q.answer, correct, True, 3.0, 1.0)


@pytest.fixture
def own_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_STATE_DIR", str(tmp_path))
    return tmp_path


def test_drill_results_make_the_weakest_topics_come_first(own_progress):
    for qid, correct in [("06.late_child", False), ("06.whole_kill", False), ("06.reject", True),
                         ("04.order", True), ("04.lists", True), ("02.attempts", True), ("02.backoff", False)]:
        records.record(outcome(qid, correct))
    data = progress.load()
    assert data["drill"]["06.late_child"] == {**data["drill"]["06.late_child"], "asked": 1, "right": 0}
    assert [ch for ch, _, _ in records.weakest_topics()] == ["06", "02"]
    first = session.pick(seed=1)
    assert {q.id for q in first[:2]} == {"06.late_child", "06.whole_kill"}, "the missed questions come first"
    assert [q.chapter for q in first[:4]] == ["06"] * 4, "then the rest of the weakest chapter"
    assert first.index(BY_ID["02.backoff"]) < first.index(BY_ID["06.reject"]), "a miss before a right answer"
    assert {q.chapter for q in first[-4:]} == {"04"}, "the chapter answered right comes last"
    mock = session.pick(mock=True, seed=1)
    assert mock[0].chapter == "06" and len({q.chapter for q in mock}) == 10 == len(mock)


def test_coursekit_progress_shows_the_weakest_topics(own_progress):
    records.record(outcome("10.llen", False))
    records.record(outcome("10.heartbeat", True))
    env = {**os.environ, "COURSEKIT_STATE_DIR": str(own_progress)}
    out = subprocess.run([sys.executable, "-m", "coursekit", "progress"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "drill: 1/2 answers right" in out.stdout
    assert "10  1/2 right  reread notebooks/10_broker_trouble.ipynb" in out.stdout


# -- the mock interview's report -------------------------------------------------------------------------------
def finished_mock(lang: str) -> Drill:
    drill = session.mock(seed=3, lang=lang, record=False)
    for i, q in enumerate(drill.questions[:3]):
        drill.outcomes.append(outcome(q.id, correct=i != 1))
    return drill


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_mock_report_exports_json_and_markdown(lang, tmp_path):
    drill = finished_mock(lang)
    assert drill.minutes == 20 and len(drill.questions) == 10 and drill.mock
    json_path, md_path = report.export(drill, tmp_path / "mock.json")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["mode"] == "mock" and data["score"] == {"right": 2, "asked": 3, "of": 10}
    second = drill.questions[1]
    assert data["questions"][1]["question"] == second.text(lang)
    assert data["weakest"] == [{"chapter": second.chapter, "lesson": report.lesson(second.chapter)}]
    md = md_path.read_text(encoding="utf-8")
    assert ("模拟面试" if lang == "zh" else "mock interview") in md and "2/3" in md
    assert second.explanation(lang) in md


def typed_answer(q) -> str:
    """What a learner who knows the bank types: a letter, digits, the names in order, the key words."""
    if q.kind == "choice":
        return "abcdefghij"[q.choices.index(q.answer)]
    if q.kind == "number":
        return f"{q.answer:g}" if isinstance(q.answer, float) else str(q.answer)
    if q.kind == "order":
        return " ".join(q.answer)
    return " and ".join(group.split("|")[0] for group in q.answer)


def test_a_mock_interview_in_the_terminal_gives_no_hints_and_writes_its_report(redis_url, own_progress, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("COURSEKIT_BROKER_URL", redis_url)  # the suite's broker, whatever the state folder knows
    picked = session.pick(mock=True, count=2, seed=5)
    assert len({q.chapter for q in picked}) == 2
    term = Terminal("--mock", "--count", "2", "--seed", "5", "--report", str(tmp_path / "mock.json"))
    for q in picked:
        term.wait_for(q.question)
        term.wait_for("your answer")
        term.type(typed_answer(q))
        term.wait_for("RIGHT")
    assert term.finish(30) == 0
    assert "20 minutes in all" in term.text and "score: 2/2" in term.text, term.text
    assert not any(q.explain in term.text for q in picked), "a mock interview shows no explanation before the end"
    data = json.loads((tmp_path / "mock.json").read_text(encoding="utf-8"))
    assert [x["id"] for x in data["questions"]] == [q.id for q in picked] and data["mode"] == "mock"
    assert all(x["correct"] and x["agrees_with_bank"] for x in data["questions"])
    md = (tmp_path / "mock.md").read_text(encoding="utf-8")
    assert all(q.explain in md for q in picked), "the report explains every answer"
