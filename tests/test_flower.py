"""Flower on the course cluster: `coursekit flower` and `ck.Flower` list this namespace's workers and the tasks they
ran (read through Flower's HTTP API, and in a real browser), nobody else's; bad input gets one clear message; and
Flower never outlives the process that started it."""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from procs import wait_gone

import coursekit as ck
from coursekit import census
import coursekit.flower as flower_module
from coursekit.flower import Flower

ADD = "coursekit.labs.first.add"
EVENTS_WAIT_S = 20  # events reach Flower within a second or two; this only bounds a broken run


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through an http_proxy


def api(flower: Flower, path: str):
    with DIRECT.open(f"{flower.url}{path}", timeout=10) as reply:
        return json.load(reply)


def wait_until(predicate, seconds: float = EVENTS_WAIT_S, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.2)


def wait_for_tasks(flower: Flower, ids: list[str]) -> dict:
    def seen():
        tasks = api(flower, "/api/tasks")
        return tasks if all(tasks.get(i, {}).get("state") == "SUCCESS" for i in ids) else None

    return wait_until(seen, what=f"Flower listing tasks {ids} as SUCCESS")


def wait_for_worker(flower: Flower, nodename: str) -> dict:
    def seen():
        workers = api(flower, "/api/workers?refresh=1")
        return workers if nodename in workers else None

    return wait_until(seen, what=f"Flower listing worker {nodename}")


@pytest.fixture
def watched(clean_namespace):
    """A lesson worker, then Flower, then at once three `add` tasks: (flower, worker nodename, task ids).
    Flower learns tasks from events, which Redis does not keep: the tasks are sent the moment start() returns,
    so that a Flower that answered before it listened would lose them (a window of about 0.1 s, so this catches
    such a regression on some runs, not all)."""
    with ck.Worker("coursekit.labs.first", name="flowerw") as worker, Flower() as flower:
        from coursekit.labs.first import add

        results = [add.delay(n, 1) for n in range(3)]
        assert [ck.get(r) for r in results] == [1, 2, 3]
        yield flower, worker.nodename, [r.id for r in results]


# ---------------------------------------------------------------------------------------------------------------
# what Flower shows


def test_flower_lists_the_running_worker_and_the_tasks_it_ran(watched, monkeypatch):
    flower, nodename, ids = watched
    assert flower.url.startswith("http://127.0.0.1:") and flower.running

    tasks = wait_for_tasks(flower, ids)
    for task_id in ids:
        assert tasks[task_id]["name"] == ADD
        assert tasks[task_id]["worker"] == nodename
    assert sorted(tasks[i]["result"] for i in ids) == ["1", "2", "3"]
    workers = wait_for_worker(flower, nodename)
    assert workers[nodename]["stats"]["pool"]["max-concurrency"] == 1  # inspect answered through the pidbox
    assert f'href="{flower.url}"' in flower._repr_html_()
    listed = [p for p in census.survey().course if p.pid == flower.pid]
    assert [(p.role, p.started_by) for p in listed] == [("flower", census.origin())], listed

    # A Flower in another namespace sees none of it: the prefix, not luck, decides what Flower shows.
    with monkeypatch.context() as m:
        m.setenv("COURSEKIT_NAMESPACE", f"cktestother{os.getpid()}:")
        other = Flower()
    with other:
        assert other.namespace != flower.namespace
        from coursekit.labs.first import add

        later = add.delay(10, 1)  # sent while both Flowers listen
        assert ck.get(later) == 11
        wait_for_tasks(flower, [later.id])
        assert later.id not in api(other, "/api/tasks")
        assert nodename not in api(other, "/api/workers?refresh=1")  # its inspect broadcast reached no one


def test_flower_is_read_only(watched):
    flower, nodename, _ = watched
    wait_for_worker(flower, nodename)  # so that a Flower that is not read-only would shut it down
    request = urllib.request.Request(f"{flower.url}/api/worker/shutdown/{nodename}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        DIRECT.open(request, timeout=10)
    # Flower skips its XSRF check when no login is set, so read-only mode alone refuses this (a web page the
    # learner visits could send the same POST).
    assert refused.value.code == 403 and b"Read only" in refused.value.read(), refused.value
    assert api(flower, "/api/workers?refresh=1").get(nodename), "the worker should still answer"


# ---------------------------------------------------------------------------------------------------------------
# the command, and the process's life


def start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`coursekit flower` as a terminal starts it: its own process group, which Ctrl-C signals as a whole."""
    return subprocess.Popen([sys.executable, "-m", "coursekit", "flower", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env if env is not None else os.environ.copy())


def first_line(proc: subprocess.Popen, seconds: float = 60) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(seconds):
            raise AssertionError(f"`coursekit flower` printed nothing in {seconds} s")
    line = proc.stdout.readline()
    assert line.startswith("Flower: http://127.0.0.1:"), line + (proc.stderr.read() if not line else "")
    return line


def flower_pid_of(cli: subprocess.Popen) -> int:
    kids = [p for p in psutil.Process(cli.pid).children() if "coursekit.flower:app" in " ".join(p.cmdline())]
    assert len(kids) == 1, kids
    return kids[0].pid


@pytest.mark.usefixtures("redis_url")
def test_cli_prints_the_url_and_stops_flower_on_ctrl_c():
    cli = start_cli()
    try:
        line = first_line(cli)
        url = line.split()[1]
        assert "Ctrl-C to stop" in line and os.environ["COURSEKIT_NAMESPACE"] in line
        with DIRECT.open(f"{url}/healthcheck", timeout=10) as reply:
            assert reply.read() == b"OK"
        with DIRECT.open(f"{url}/api/workers", timeout=10) as reply:
            assert isinstance(json.load(reply), dict)  # the API answers without a password
        pid = flower_pid_of(cli)
        assert cli.poll() is None, "the command must stay in the foreground while Flower runs"
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 0, err
        assert "Flower stopped" in out and "Traceback" not in err, err
        assert wait_gone(pid, 10), f"Flower pid {pid} still runs after Ctrl-C"
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()


@pytest.mark.usefixtures("redis_url")
def test_flower_dies_with_its_owner_even_on_sigkill():
    cli = start_cli()
    try:
        first_line(cli)
        pid = flower_pid_of(cli)
        cli.kill()  # SIGKILL: no atexit, no finally; only the watchdog in coursekit.launch is left
        cli.wait()
        assert wait_gone(pid, 10), f"Flower pid {pid} outlived the SIGKILLed process that started it"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


# ---------------------------------------------------------------------------------------------------------------
# bad input: one clear message, no traceback, no hang


@pytest.mark.usefixtures("redis_url")
def test_port_taken_is_one_message(taken_port):
    done = subprocess.run([sys.executable, "-m", "coursekit", "flower", "--port", str(taken_port)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {taken_port} on 127.0.0.1 is taken" in done.stderr
    assert "--port" in done.stderr.split("Fix:", 1)[1]
    assert "Traceback" not in done.stderr and done.stdout == ""
    with pytest.raises(ck.CourseError, match=f"port {taken_port}"):
        Flower(taken_port).start()


@pytest.mark.usefixtures("redis_url")
def test_port_taken_after_the_check_is_diagnosed_from_flowers_log(taken_port, monkeypatch):
    """Someone may take the port between our check and Flower's bind: Flower exits, and its log says why."""
    monkeypatch.setattr(flower_module, "port_taken", lambda port: False)
    monitor = Flower(taken_port)
    with pytest.raises(ck.CourseError) as failed:
        monitor.start()
    assert "exited" in failed.value.problem and "took the port" in failed.value.fix
    assert "Traceback" not in failed.value.text()
    assert not monitor.running


@pytest.mark.parametrize("module_text, expected", [
    ("raise ImportError(\"No module named 'flower'\")", "Flower is not installed"),
    ("__version__ = '1.2.0'", "Flower 1.2.0 is installed; coursekit runs Flower 2.x"),
])
def test_flower_missing_or_wrong_is_one_message(tmp_path, module_text, expected):
    fake = tmp_path / "flower"
    fake.mkdir()
    (fake / "__init__.py").write_text(module_text + "\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "coursekit", "flower"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and "pip install 'flower==" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_no_broker_is_one_message():
    env = dict(os.environ, COURSEKIT_BROKER_URL="redis://127.0.0.1:1/0")
    done = subprocess.run([sys.executable, "-m", "coursekit", "flower"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "COURSEKIT_BROKER_URL" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# ---------------------------------------------------------------------------------------------------------------
# in a browser


@pytest.fixture
def browser_page(chromium):
    """A page of the suite's chromium (browser_fixtures.py): one Playwright per test process."""
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    yield page
    page.close()


@pytest.mark.browser
def test_flower_pages_show_the_worker_and_the_task_names(browser_page, watched, tmp_path):
    """browser_page comes first, so that without chromium the test skips before it starts anything."""
    flower, nodename, ids = watched
    page = browser_page
    shots = Path(os.environ.get("COURSEKIT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    page.goto(f"{flower.url}/workers")
    row = page.locator("#workers-table tr", has_text=nodename)
    row.first.wait_for(timeout=EVENTS_WAIT_S * 1000)
    assert row.count() == 1 and "Online" in row.inner_text()
    page.screenshot(path=shots / "flower-workers.png", full_page=True)

    page.goto(f"{flower.url}/tasks")
    table = page.locator("#tasks-table")
    table.get_by_text(ADD).first.wait_for(timeout=EVENTS_WAIT_S * 1000)
    for task_id in ids:
        row = table.locator("tr", has_text=task_id)
        assert row.count() == 1, f"task {task_id} is not in Flower's tasks table"
        assert ADD in row.inner_text() and "SUCCESS" in row.inner_text()
    page.screenshot(path=shots / "flower-tasks.png", full_page=True)
    assert (shots / "flower-workers.png").stat().st_size > 10_000
