"""`coursekit doctor`: says whether the course can run here, and every problem comes with its fix. It, `status` and
`ck.checkup()` count only this course's workers and name what started each."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import nbformat
import pytest
import redis
from nbformat.v4 import new_code_cell, new_notebook

import coursekit as ck
from coursekit import broker, census, doctor, namespace, probe, runner, state
from coursekit.course import ROOT

BAD_URL = "redis://127.0.0.1:1/0"

def run_doctor(**env_changes: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "coursekit", "doctor"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_doctor_passes_here():
    done = run_doctor()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The course can run here." in done.stdout
    assert "[FAIL]" not in done.stdout
    assert "Traceback" not in done.stderr


def test_doctor_fails_on_an_unreachable_broker_url():
    done = run_doctor(COURSEKIT_BROKER_URL=BAD_URL)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "fix" in out.lower(), out
    assert BAD_URL in out
    assert "The course cannot run until the FAIL lines are fixed." in out


def test_doctor_fails_on_an_unusable_scheme():
    done = run_doctor(COURSEKIT_BROKER_URL="foo://x")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "scheme 'foo'" in out and "cannot use" in out, out
    assert "fix" in out.lower(), out


def test_empty_broker_url_counts_as_unset():
    done = run_doctor(COURSEKIT_BROKER_URL="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The course can run here." in done.stdout
    # the same Redis an unset variable resolves to: the machine's on 6379 (the embedded one where there is none)
    expected = broker.Local(broker.LOCAL_REDIS).find([])
    if expected is not None:
        assert f"[ok  ] redis: {expected.describe()}" in done.stdout, done.stdout
    else:
        assert "[ok  ] redis: none running; `coursekit up` will start the embedded" in done.stdout, done.stdout
    assert "COURSEKIT_BROKER_URL=''" not in done.stdout


def test_windows_gets_the_solo_pool_advice(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    finding = doctor.check_os()
    assert not finding.ok
    assert "solo" in finding.fix
    assert any("fix:" in line and "solo" in line for line in finding.lines())


def test_linux_needs_no_os_advice(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    finding = doctor.check_os()
    assert finding.ok and "solo" not in finding.lines()[0]


def test_report_exit_code_follows_blocking_findings():
    fine = [doctor.Finding("a", True, "fine"), doctor.Finding("b", False, "meh", "do x")]  # a warning only
    text, code = doctor.report(fine)
    assert code == 0 and text.endswith("The course can run here.")
    assert "[warn] b: meh" in text and "fix: do x" in text
    blocked = fine + [doctor.Finding("c", False, "broken", "do y", blocking=True)]
    text, code = doctor.report(blocked)
    assert code == 1 and "[FAIL] c: broken" in text and "fix: do y" in text
    assert text.endswith("The course cannot run until the FAIL lines are fixed.")


def test_a_port_held_by_something_else_is_reported():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        findings = doctor.check_ports([(port, "Redis", f"redis://127.0.0.1:{port}/0",
                                        lambda url: probe.redis_answers(url, timeout=0.3), "COURSEKIT_BROKER_URL")])
    assert len(findings) == 1 and not findings[0].ok and findings[0].topic == f"port {port}"
    assert "COURSEKIT_BROKER_URL" in findings[0].fix


def test_the_real_brokers_ports_are_not_conflicts():
    assert doctor.check_ports() == []


# ---------------------------------------------------------------------------------------------------------------
# which workers are this course's: doctor, status and checkup() count only those, and name what started each

WORKERS_LINE = re.compile(r"workers: (\d+) course workers? \(namespace (\S+), state folder (.+)\)")
OTHERS_LINE = re.compile(r"other celery: (\d+) other celery process(?:es)? on this machine, not this course's")


def counts(out: str) -> tuple[int, int]:
    """(course workers, other celery processes) as doctor or status reports them."""
    course = WORKERS_LINE.search(out)
    assert course, out
    assert course.group(2) == namespace.prefix() and course.group(3) == os.path.abspath(state.location()), out
    others = OTHERS_LINE.search(out)
    return int(course.group(1)), int(others.group(1)) if others else 0


def wait_for_log(path, marker: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in path.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, \
            f"the foreign worker did not become ready:\n{path.read_text(errors='replace')[-2000:]}"
        time.sleep(0.1)


@pytest.fixture
def foreign_workers(redis_url, tmp_path):
    """Two real celery workers that are not this course's: a plain `celery worker` and one coursekit launched
    for another namespace and state folder (another learner, another test run)."""
    foreign_ns = f"cktest{os.getpid()}-foreign:"
    env = {**os.environ, "COURSEKIT_NAMESPACE": foreign_ns, "COURSEKIT_STATE_DIR": str(tmp_path / "foreign-state"),
           "COURSEKIT_BROKER_URL": redis_url}
    tail = ["-A", "coursekit.labs.first", "worker", "-P", "solo", "--without-mingle", "--without-gossip", "-l", "INFO"]
    commands = {
        "plain": [sys.executable, "-m", "celery", *tail[:3], "-n", f"plain-{os.getpid()}@%h", *tail[3:]],
        "launched": [sys.executable, "-m", "coursekit.launch", "--owner", str(os.getpid()), "celery", *tail[:3],
                     "-n", f"launched-{os.getpid()}@%h", *tail[3:]],
    }
    procs = []
    try:
        for name, cmd in commands.items():
            log = tmp_path / f"{name}.log"
            with open(log, "wb") as out:
                procs.append((subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True), log))
        for proc, log in procs:
            wait_for_log(log, " ready.", proc)
        yield [proc.pid for proc, _ in procs]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        client = redis.Redis.from_url(redis_url)
        try:
            left = list(client.scan_iter(match=f"{foreign_ns}*"))
            if left:
                client.delete(*left)
        finally:
            client.close()


def test_doctor_counts_only_this_courses_workers(foreign_workers):
    ck.stop_all()
    before = run_doctor()
    assert before.returncode == 0, before.stdout + before.stderr
    course, others = counts(before.stdout)
    assert course == 0, before.stdout
    assert others >= len(foreign_workers), before.stdout  # other helpers' and test runs' may add more

    # A course tool that is not a worker (as `coursekit flower` is) is listed, but not counted as a worker.
    tool = subprocess.Popen([sys.executable, "-m", "celery", "-A", "coursekit.labs.first", "events", "--dump"],
                            env={**os.environ, **census.marks("a course tool")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with ck.Worker("coursekit.labs.first", concurrency=2, started_by="the doctor test") as worker:
            during = run_doctor()
            status = subprocess.run([sys.executable, "-m", "coursekit", "status"], capture_output=True, text=True,
                                    timeout=60)
    finally:
        os.killpg(tool.pid, signal.SIGKILL)
        tool.wait()
    for out in (during.stdout, status.stdout):
        course, others = counts(out)
        assert course == 1, out  # its two pool children are part of it, not workers of their own
        assert others >= len(foreign_workers), out
        assert re.search(rf"pid {worker.pid}  {re.escape(worker.nodename)}  -A coursekit\.labs\.first  "
                         r"started by the doctor test, \d+ s ago", out), out
        assert re.search(rf"pid {tool.pid}  celery events  started by a course tool, \d+ s ago", out), out
        assert not any(f"pid {pid} " in out for pid in foreign_workers), out


@pytest.mark.parametrize(("environ", "argv", "expected"), [
    ({"JPY_SESSION_NAME": str(ROOT / "notebooks" / "01_calling.ipynb")}, ["ipykernel_launcher.py"],
     "notebooks/01_calling.ipynb"),
    ({"JPY_SESSION_NAME": "/elsewhere/mine.ipynb"}, ["ipykernel_launcher.py"], "/elsewhere/mine.ipynb"),
    ({}, ["/usr/lib/python3/site-packages/ipykernel_launcher.py", "-f", "k.json"], "a Jupyter kernel (pid"),
    ({"PYTEST_CURRENT_TEST": "tests/test_worker.py::test_start_run_stop (call)"}, ["pytest"],
     "test tests/test_worker.py::test_start_run_stop"),
    ({}, [str(ROOT / "scripts" / "load.py")], "scripts/load.py"),
    ({}, ["/home/me/.venv/bin/coursekit", "check", "01.countdown"], "coursekit check 01.countdown"),
    ({}, ["-c"], "an interactive Python (pid"),
    ({"COURSEKIT_STARTED_BY": "my label", "JPY_SESSION_NAME": "/x.ipynb"}, ["x.py"], "my label"),
])
def test_origin_names_what_starts_the_workers(environ, argv, expected):
    assert census.origin(environ, argv).startswith(expected)


def test_a_labelled_block_wins_and_ends():
    env = {"JPY_SESSION_NAME": str(ROOT / "exercises" / "01_calling.ipynb")}
    with census.labelled("exercise 01.countdown"):
        assert census.origin(env, []) == "exercise 01.countdown"
    assert census.origin(env, []) == "exercises/01_calling.ipynb"


def test_a_kernel_names_its_notebook_and_checkup_leaves_no_value(tmp_path, redis_url):
    """`coursekit run` (and the notebook tests) give the kernel its notebook's path, as JupyterLab does."""
    path = tmp_path / "probe.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("import coursekit as ck\nck.checkup()"),
        new_code_cell("from coursekit import census\n"
                      "with ck.Worker('coursekit.labs.first') as w:\n"
                      "    seen = census.survey().course\n"
                      "print(w.started_by)\n"
                      "print('\\n'.join(s.line() for s in seen if s.pid == w.pid))"),
    ]), path)
    outcome = runner.run(path, save_to=tmp_path / "ran.ipynb")
    assert outcome.ok, outcome.line()
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    checkup_out = ran.cells[0].outputs
    assert [o.output_type for o in checkup_out] == ["stream"], checkup_out  # the report, and no True or None
    assert "The course can run here." in checkup_out[0].text and "[ok  ] workers: " in checkup_out[0].text
    printed = "".join(o.get("text", "") for o in ran.cells[1].outputs).splitlines()
    assert printed[0] == str(path), printed
    assert re.fullmatch(rf"pid \d+  w1-\d+@\S+  -A coursekit\.labs\.first  started by {re.escape(str(path))}, "
                        r"\d+ s ago", printed[1]), printed


def test_a_check_worker_names_its_exercise(tmp_path, redis_url):
    from coursekit.checking import CheckWorker
    from coursekit.worker import load_app

    worker = CheckWorker("coursekit.labs.calling", None, cwd=tmp_path, exercise_id="01.countdown")
    worker.app = load_app(worker.module)
    assert worker.environment()[census.STARTED_BY_ENV] == "the check of exercise 01.countdown"
