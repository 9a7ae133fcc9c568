"""Exercises: the generated notebooks, the checks against right and wrong answers, progress and the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import nbformat
import pytest

from coursekit import build, course, progress
from coursekit.checks import all_exercises, ch00, ch01, ch02

SOLUTION_01 = '''
from coursekit.labs.calling import add, whereabouts


def send_later(x, y):
    return add.apply_async((x, y), countdown=2)


def send_if_fresh(x, y):
    return add.apply_async((x, y), expires=1)


def here():
    return whereabouts.apply().get()


def on_a_worker():
    return whereabouts.delay().get(timeout=10)
'''

SOLUTION_02 = '''
from coursekit.labs.retrying import CardDeclined, GatewayTimeout, app, flaky_call, gateway


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=1, retry_jitter=False, max_retries=5)
def fetch(self):
    return flaky_call(self.request.retries, failures=3)


@app.task(bind=True, max_retries=2, default_retry_delay=0.5)
def report(self):
    try:
        raise ValueError("the upstream service said no")
    except ValueError as exc:
        raise self.retry(exc=exc)


@app.task(bind=True, autoretry_for=(GatewayTimeout,), retry_kwargs={"countdown": 0.2}, max_retries=3)
def charge(self, order):
    return gateway(order, self.request.retries)
'''
FETCH = "@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=1, retry_jitter=False, max_retries=5)"
CHARGE = '@app.task(bind=True, autoretry_for=(GatewayTimeout,), retry_kwargs={"countdown": 0.2}, max_retries=3)'

FIRST_00 = '''
import coursekit as ck

app = ck.make_app("ex00_first")


@app.task
def multiply(x, y):
    return {body}
'''


@pytest.fixture
def ws(tmp_path, redis_url, clean_namespace):
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


def attempt(ws, exercise, source):
    (ws / f"{exercise.module}.py").write_text(textwrap.dedent(source))
    return exercise.check(ws)


def replaced(function: str, body: str) -> str:
    """The right ch01 module with one function's body swapped for a wrong one."""
    lines, out, skipping = SOLUTION_01.splitlines(), [], False
    for line in lines:
        if line.startswith(f"def {function}("):
            out += [line, f"    {body}"]
            skipping = True
        elif skipping and line.startswith("    "):
            continue
        else:
            skipping = False
            out.append(line)
    return "\n".join(out) + "\n"


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


# -- right answers -----------------------------------------------------------------------------------------
def test_the_solutions_pass(ws):
    assert attempt(ws, ch00.first_task, FIRST_00.format(body="x * y")).passed
    for exercise, source in ((ch01.countdown, SOLUTION_01), (ch01.expires, SOLUTION_01),
                             (ch01.apply_or_async, SOLUTION_01), (ch02.backoff, SOLUTION_02),
                             (ch02.give_up, SOLUTION_02), (ch02.permanent, SOLUTION_02)):
        verdict = attempt(ws, exercise, source)
        assert verdict.passed, repr(verdict)
        assert verdict.seconds < 30


def test_solution_text_comes_from_the_solutions_notebook():
    assert "countdown=2" in repr(ch01.countdown.solution())
    assert "@app.task" in repr(ch00.first_task.solution()) and "x * y" in repr(ch00.first_task.solution())


# -- wrong answers, each named ---------------------------------------------------------------------------
WRONG = [
    (ch00.first_task, FIRST_00.format(body="x + y"), "multiply(6, 7) returned 13; expected 42"),
    (ch00.first_task, FIRST_00.format(body="x * y").replace("@app.task\n", ""), "plain function"),
    (ch00.first_task, FIRST_00.format(body="x / 0"), "raised ZeroDivisionError on the worker"),
    (ch00.first_task, FIRST_00.format(body="__import__('time').sleep(10**6)"), "no result after 10 s"),
    (ch00.first_task, FIRST_00.format(body="x * y").replace('ck.make_app("ex00_first")',
                                                           'ck.make_app("ex00_first").__class__.__base__("x")'),
     "ck.make_app"),
    (ch01.countdown, replaced("send_later", "return add.delay(x, y)"), "must start no sooner than 2 s"),
    (ch01.countdown, replaced("send_later", "import time; time.sleep(2); return add.delay(x, y)"),
     "waited instead of scheduling"),
    (ch01.countdown, replaced("send_later", "return add.apply_async((x, y), countdown=20)"), "no result within 8 s"),
    (ch01.countdown, replaced("send_later", "return None"), "returned NoneType None"),
    (ch01.countdown, replaced("send_later", "return add.apply((x, y))"), "returned an EagerResult"),
    (ch01.countdown, replaced("send_later", "import time; time.sleep(10**6)"), "did not return within 5 s"),
    (ch01.expires, replaced("send_if_fresh", "return add.delay(x, y)"), "should have expired after 1 s"),
    (ch01.expires, replaced("send_if_fresh", "return add.apply_async((x, y), countdown=1)"),
     "should have expired after 1 s"),
    (ch01.expires, replaced("send_if_fresh", "raise RuntimeError('no broker for me')"),
     "raised RuntimeError: no broker for me"),
    (ch01.apply_or_async, replaced("here", "return whereabouts()"), "called the function directly"),
    (ch01.apply_or_async, replaced("here", "return whereabouts.delay().get(timeout=10)"), "not in this process"),
    (ch01.apply_or_async, replaced("on_a_worker", "return whereabouts.apply().get()"),
     "not one of the worker's pool processes"),
    (ch01.apply_or_async, replaced("on_a_worker", "return whereabouts.delay()"), "returned AsyncResult"),
    (ch01.apply_or_async, replaced("here", "return '5'"), "return what the whereabouts task returns"),
    (ch02.backoff, SOLUTION_02.replace(FETCH, "@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=5)"),
     "waits default_retry_delay, 180 s"),
    (ch02.backoff, SOLUTION_02.replace(FETCH, FETCH.replace("(ConnectionError,)", "(ValueError,)")),
     "ran once and did not retry"),
    (ch02.backoff, SOLUTION_02.replace(FETCH, FETCH.replace("retry_backoff=1", "retry_backoff=2")),
     "gap 1 was 2."),
    (ch02.give_up, SOLUTION_02.replace("raise self.retry(exc=exc)", "raise self.retry()"),
     "the last failure was MaxRetriesExceededError"),
    (ch02.give_up, SOLUTION_02.replace("raise self.retry(exc=exc)", "raise"), "report ran once"),
    (ch02.give_up, SOLUTION_02.replace("raise self.retry(exc=exc)", "raise self.retry(exc=exc, max_retries=4)"),
     "report ran 5 times; expected 3"),
    (ch02.permanent, SOLUTION_02.replace(CHARGE, CHARGE.replace("(GatewayTimeout,)", "(Exception,)")),
     "ran 4 times: a declined card is permanent"),
    (ch02.permanent, SOLUTION_02.replace(CHARGE, "@app.task(bind=True)"), "a gateway timeout is temporary"),
    (ch02.permanent, SOLUTION_02.replace(CHARGE, CHARGE.replace(', retry_kwargs={"countdown": 0.2}', "")),
     "the retry must come soon"),
]


@pytest.mark.parametrize(("exercise", "source", "message"), WRONG,
                         ids=[f"{e.id}-{i}" for i, (e, _, _) in enumerate(WRONG)])
def test_wrong_answers_are_rejected_with_a_reason(ws, exercise, source, message):
    verdict = attempt(ws, exercise, source)
    assert verdict.status == "incorrect", repr(verdict)
    assert message in verdict.message, repr(verdict)
    assert verdict.seconds < 30


def test_missing_module_and_placeholder_read_as_not_attempted(ws):
    assert ch01.countdown.check(ws).status == "not attempted"
    verdict = attempt(ws, ch01.countdown, replaced("send_later", "return ____"))
    assert verdict.status == "not attempted" and "placeholder" in verdict.message


def test_syntax_error_names_the_line(ws):
    verdict = attempt(ws, ch01.countdown, SOLUTION_01.replace("def here():", "def here(:"))
    assert verdict.status == "incorrect" and "syntax error" in verdict.message and "line" in verdict.message


def test_strict_mode_raises_on_a_wrong_answer(ws, monkeypatch):
    monkeypatch.setenv("COURSEKIT_STRICT", "1")
    with pytest.raises(AssertionError, match="INCORRECT"):
        attempt(ws, ch01.apply_or_async, replaced("here", "return whereabouts()"))
    assert ch01.expires.check(ws.parent / "nowhere").status == "not attempted"  # not attempted never raises


# -- progress ---------------------------------------------------------------------------------------------
def test_progress_counts_hints_solutions_and_passes(private_state, ws):
    ch01.countdown.hint()
    ch01.countdown.hint(2)
    assert "Hint 2" in repr(ch01.countdown.hint(9))  # tiers clamp to the last one
    ch01.expires.solution()
    attempt(ws, ch01.countdown, replaced("send_later", "return add.delay(x, y)"))
    entry = progress.load()["exercises"]["01.countdown"]
    assert entry["status"] == "incorrect" and entry["hints"] == 2 and entry["attempts"] == 1
    attempt(ws, ch01.countdown, SOLUTION_01)
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
    assert (tmp_path / "ana.csv").read_text().startswith("chapter,done,hints,solutions,minutes,learner")


def test_cli_check_and_watch(ws):
    (ws / "ex01_calling.py").write_text(replaced("send_later", "return add.delay(x, y)"))
    run = subprocess.run([sys.executable, "-m", "coursekit", "check", "01.countdown", "--workspace", str(ws),
                          "--watch", "--max-runs", "1"], capture_output=True, text=True, timeout=60,
                         env=os.environ.copy())
    assert run.returncode == 1 and "[INCORRECT] 01.countdown" in run.stdout
    listing = subprocess.run([sys.executable, "-m", "coursekit", "check", "--all"], capture_output=True, text=True,
                             timeout=30)
    assert listing.returncode == 0 and all(i in listing.stdout for i in all_exercises())


def test_a_check_never_runs_past_its_time_bound(ws, monkeypatch):
    monkeypatch.setattr(ch01.Countdown, "timeout", 3.0)
    verdict = attempt(ws, ch01.countdown, replaced("send_later", "import time; time.sleep(10**6)"))
    assert verdict.status == "uncheckable" and "ran out" in verdict.message
    assert verdict.seconds < 4.5
