"""The fork server behind each check's preflight (coursekit/forkserver.py): what a forked preflight sees, and that
neither the server nor its children outlive the process that started them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
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
    assert not running(preflight.pid)


OWNER = """
import sys, time
from pathlib import Path
from coursekit import forkserver, learner
preflight = learner.Preflight(Path(sys.argv[1]), "workspace.ex_hang", 60)
time.sleep(0.5)
print(forkserver._server.pid, preflight.pid, flush=True)
time.sleep(60)
"""


def test_the_server_and_its_children_end_with_their_owner(tmp_path):
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "ex_hang.py").write_text(HANGS)
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(folder / "ex_hang.py")], stdout=subprocess.PIPE,
                             text=True)
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
    first = forkserver.start("os:getpid")
    os.kill(forkserver._server.pid, signal.SIGKILL)
    forkserver._server.wait()
    begun = time.monotonic()
    assert forkserver.start("os:getpid") != first and time.monotonic() - begun < 10
