"""The fork server behind each check's preflight (coursekit/forkserver.py): what a forked preflight sees, and that
neither the server nor its children outlive the process that started them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from procs import running, wait_until_gone

from coursekit import forkserver, learner

HANGS = "import time\n\nwhile True:\n    time.sleep(0.1)\n"


def test_a_preflight_imports_in_its_own_folder_and_environment(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 7\n")
    (folder / "ex_env.py").write_text(
        "import os\nfrom workspace.helper import VALUE\n"
        "raise ValueError(f\"{os.environ['COURSEKIT_PROBE']} {os.getcwd()} {VALUE}\")\n")
    preflight = learner.Preflight(folder / "ex_env.py", "workspace.ex_env", 20, env={"COURSEKIT_PROBE": "seen"})
    try:
        seen = preflight.result()
    finally:
        preflight.close()
    assert (seen.error, seen.message, seen.line) == ("ValueError", f"seen {tmp_path} 7", 3), seen
    assert "COURSEKIT_PROBE" not in os.environ


def test_a_hung_import_is_stopped_at_its_bound_and_its_line_named(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "ex_hang.py").write_text(HANGS)
    preflight = learner.Preflight(folder / "ex_hang.py", "workspace.ex_hang", 1.5)
    seen = preflight.result()
    preflight.close()
    assert seen.hung and seen.line == 4 and 1.4 < seen.seconds < 1.5 + learner.DUMP_GRACE_S + 1, seen
    assert not running(preflight.child.pid)


OWNER = """
import sys, time
from pathlib import Path
from coursekit import forkserver, learner
preflight = learner.Preflight(Path(sys.argv[1]), "workspace.ex_hang", 60)
time.sleep(0.5)
print(forkserver._server.pid, preflight.child.pid, flush=True)
time.sleep(60)
"""


def test_the_server_and_its_children_end_with_their_owner(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "ex_hang.py").write_text(HANGS)
    # the owner dies with its preflight's two files unread: they go to tmp_path, not /tmp
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(folder / "ex_hang.py")], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        server, child = (int(pid) for pid in owner.stdout.readline().split())
        assert psutil.Process(child).ppid() == server
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        left = wait_until_gone(lambda: [p for p in (server, child) if running(p)], seconds=5)
        assert not left, f"still running after their owner was killed: {left}"
    finally:
        owner.kill()
        owner.wait()


def test_a_killed_server_is_started_again():
    forkserver.start("os:getpid").close()
    killed = forkserver._server.pid
    os.kill(killed, signal.SIGKILL)
    time.sleep(0.2)  # dead, not yet reaped: start() must notice by itself
    begun = time.monotonic()
    child = forkserver.start("os:getpid")
    assert forkserver._server.pid != killed and child.wait(10) and time.monotonic() - begun < 10
    child.close()


def test_an_interrupted_request_leaves_no_answer_for_the_next(monkeypatch):
    """A Ctrl-C in the kernel while start() waits for its answer: the next start must get its own child's pid,
    not the answer left in the pipe."""
    forkserver.start("os:getpid").close()
    before = forkserver._server

    def interrupted(server, request, number):
        server.stdin.write(request)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(forkserver, "_answer", interrupted)
        with pytest.raises(KeyboardInterrupt):
            forkserver.start("time:sleep", 30)
    assert before.poll() is not None, "the interrupted server was left running"
    child = forkserver.start("time:sleep", 0.2)
    assert psutil.Process(child.pid).ppid() == forkserver._server.pid and child.wait(10)
    child.close()


def test_preflights_from_several_threads_each_get_their_own_answer(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    for n in range(6):
        (folder / f"ex_{n}.py").write_text(f"NAME_{n} = {n}\n")

    def preflight(n):
        one = learner.Preflight(folder / f"ex_{n}.py", f"workspace.ex_{n}", 20)
        try:
            return one.result().names
        finally:
            one.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(preflight, range(6))) == [[f"NAME_{n}"] for n in range(6)]


def test_an_import_that_ends_its_process_is_told_apart_from_a_hang(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "ex_exit.py").write_text("import os\n\nos._exit(3)\n")
    preflight = learner.Preflight(folder / "ex_exit.py", "workspace.ex_exit", 10)
    seen = preflight.result()
    preflight.close()
    assert seen.ended and not seen.hung and seen.seconds < 5, seen


def test_a_normal_exit_leaves_no_server_even_for_a_moment(tmp_path):
    """At a normal exit the owner ends its server before it goes (a test that looks for processes right after a
    `coursekit check` must find none)."""
    script = ("from coursekit import forkserver\n"
              "child = forkserver.start('os:getpid')\n"
              "print(forkserver._server.pid, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    server = int(done.stdout.split()[0])
    assert not running(server), "the server outlived its owner's exit"
