"""The `coursekit` command as a learner types it: every call is a subprocess with a time limit."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
from procs import wait_gone
import redis
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursekit import probe

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def ck(*args: str, env: dict | None = None, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coursekit", *args], env=env if env is not None else os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def notebook(path, *cells):
    """Write a v4 notebook; each cell is a code source, or a ("markdown", text) pair."""
    made = [new_markdown_cell(c[1]) if isinstance(c, tuple) else new_code_cell(c) for c in cells]
    nbformat.write(new_notebook(cells=made), path)
    return path




# ---------------------------------------------------------------------------------------------------------------
# help and `run`


def test_help_lists_every_command():
    done = ck("--help", timeout=30)
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("Commands:", 1)[1]
    commands = {line.split()[0] for line in section.strip().splitlines() if line.strip()}
    assert {"up", "down", "status", "reset", "doctor", "run", "bench"} <= commands, done.stdout


def test_run_missing_notebook_is_one_message_no_traceback():
    done = ck("run", "does/not/exist.ipynb", timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "coursekit: does/not/exist.ipynb is not a notebook or a folder", done.stderr
    assert [line for line in lines if line.startswith("coursekit:")] == [lines[0]]
    assert any(line.startswith("Fix: ") for line in lines), done.stderr
    assert "passed" not in done.stdout


def test_run_failing_notebook_names_cell_and_error(tmp_path):
    nb = notebook(tmp_path / "fails.ipynb", "x = 1", "raise ValueError('boom')", "print('never runs')")
    done = ck("run", str(nb), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and "PASS" not in done.stdout
    assert "cell 2" in done.stdout and "ValueError: boom" in done.stdout, done.stdout
    assert "cell 2: ValueError: boom" in done.stdout
    assert "never runs" not in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_run_counts_markdown_cells_as_jupyterlab_does(tmp_path):
    nb = notebook(tmp_path / "md.ipynb", ("markdown", "# Lesson"), "raise ValueError('boom')")
    done = ck("run", str(nb), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cell 2: ValueError: boom" in done.stdout, done.stdout


def test_run_passing_notebook(tmp_path):
    nb = notebook(tmp_path / "passes.ipynb", "x = 6 * 7", "assert x == 42")
    done = ck("run", str(nb), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "FAIL" not in done.stdout
    assert str(nb) in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_run_cell_timeout_names_the_cell_and_does_not_hang(tmp_path):
    nb = notebook(tmp_path / "slow.ipynb", "x = 1", "import time; time.sleep(30)")
    begun = time.monotonic()
    done = ck("run", "--timeout", "2", str(nb), timeout=60)
    took = time.monotonic() - begun
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
    assert "cell 2: the cell ran longer than 2 s" in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
    assert took < 25, f"--timeout 2 took {took:.1f} s: the 30 s sleep was not interrupted"


# ---------------------------------------------------------------------------------------------------------------
# up / status / down with the embedded broker


def test_up_status_down_twice(private_state):
    env = os.environ.copy()
    assert env["COURSEKIT_STATE_DIR"] == str(private_state)
    machine_redis_before = probe.redis_answers(LOCAL_REDIS)

    up = ck("up", "--embedded", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "embedded" in up.stdout
    record = json.loads((private_state / "broker.json").read_text())
    port, pid = record["port"], record["pid"]
    assert port != 6379
    assert f"redis://127.0.0.1:{port}/0" in up.stdout
    assert probe.redis_answers(record["url"]) is None
    assert "redis-server" in psutil.Process(pid).name()

    status = ck("status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"port {port}" in status.stdout and f"pid {pid}" in status.stdout, status.stdout
    assert f"redis: redis://127.0.0.1:{port}/0" in status.stdout

    first = ck("down", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stopped" in first.stdout and str(port) in first.stdout, first.stdout
    assert wait_gone(pid), f"redis-server pid {pid} still runs after `coursekit down`"
    assert not (private_state / "broker.json").exists()

    second = ck("down", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to stop" in second.stdout
    assert "stopped the" not in second.stdout

    if machine_redis_before is None:  # it answered before: `up`/`down` must not have touched it
        client = redis.Redis.from_url(LOCAL_REDIS, socket_timeout=2, socket_connect_timeout=2)
        try:
            assert client.ping() is True, "the machine's Redis on 6379 stopped answering PING"
        finally:
            client.close()


def test_up_replaces_a_stale_state_file(private_state):
    assert not psutil.pid_exists(999999) or "redis-server" not in psutil.Process(999999).name()
    (private_state / "broker.json").write_text(json.dumps(
        {"kind": "embedded", "url": "redis://127.0.0.1:1/0", "port": 1, "pid": 999999,
         "started_at": "2020-01-01T00:00:00+00:00"}))
    env = os.environ.copy()
    try:
        up = ck("up", "--embedded", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        notes = [line for line in up.stdout.splitlines() if line.startswith("note:")]
        assert any("stale" in line for line in notes), up.stdout
        assert "embedded" in up.stdout
        record = json.loads((private_state / "broker.json").read_text())
        assert record["pid"] != 999999 and record["port"] != 1
        assert probe.redis_answers(record["url"]) is None
    finally:
        down = ck("down", env=env)
    assert down.returncode == 0 and "stopped the embedded Redis" in down.stdout, down.stdout + down.stderr
    assert wait_gone(record["pid"])


def test_up_on_the_machines_redis_port_says_in_use(private_state):
    if probe.redis_answers(LOCAL_REDIS) is not None:
        pytest.skip("no Redis listens on 127.0.0.1:6379 on this machine")
    done = ck("up", "--embedded", "--port", "6379", env=os.environ.copy())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "port 6379 is already in use" in done.stderr, done.stderr
    assert "Fix:" in done.stderr and "--port" in done.stderr
    assert not (private_state / "broker.json").exists(), "a failed `up` left a state record"
    assert probe.redis_answers(LOCAL_REDIS) is None, "the machine's Redis on 6379 stopped answering"


def test_up_on_a_port_something_else_holds_says_in_use(private_state):
    """The same, independent of the machine: a plain listening socket that is not Redis at all."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = ck("up", "--embedded", "--port", str(port), env=os.environ.copy())
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} is already in use" in done.stderr, done.stderr
    assert "Fix:" in done.stderr and "Traceback" not in done.stderr
    assert not (private_state / "broker.json").exists()
