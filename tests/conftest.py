"""Test harness. Every test runs in a private namespace and state folder, so the suite never touches a learner's
course data, and at the end no process the suite started may still run.

The suite runs in parallel (`make test`: pytest-xdist). Each xdist worker is a process of its own that imports
this file itself, so each has its own namespace (cktest<its pid>:) and state folder, and runs the leak check and
the namespace reset below for what it started. parallel.py decides the order and the groups."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import psutil
import pytest
from procs import wait_until_gone
from required import missing

# Set before coursekit is imported anywhere, and inherited by every worker, kernel and CLI the tests start.
SUITE_STATE = Path(tempfile.mkdtemp(prefix="coursekit-tests-"))
os.environ["COURSEKIT_STATE_DIR"] = str(SUITE_STATE)
os.environ["COURSEKIT_NAMESPACE"] = f"cktest{os.getpid()}:"
os.environ.pop("COURSEKIT_BROKER_URL", None)
os.environ.pop("COURSEKIT_RABBITMQ_URL", None)

import coursekit as ck  # noqa: E402
from coursekit import broker, namespace, rabbit  # noqa: E402
from parallel import name_groups_file, pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: E402,F401
# Session fixtures live here, not in the modules that use them: a fixture imported into two test modules is two
# fixtures to pytest, each set up once (two Playwrights in one process fail).
from browser_fixtures import chromium, context, lab  # noqa: E402,F401
from walls import walls  # noqa: E402,F401

name_groups_file(SUITE_STATE)

def started_by_suite() -> list[psutil.Process]:
    """Celery workers and redis-servers whose environment or command line names this suite's state folder."""
    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        cmd = " ".join(proc.info.get("cmdline") or [])
        if not ("celery" in cmd or "redis-server" in cmd or "ipykernel" in cmd):
            continue
        try:
            env_state = proc.environ().get("COURSEKIT_STATE_DIR", "")
        except psutil.Error:
            env_state = ""
        if env_state == str(SUITE_STATE) or str(SUITE_STATE) in cmd:
            mine.append(proc)
    return mine


def pytest_unconfigure(config):
    # xdist's controller imports this file too but runs no test, so no fixture removes its (empty) folder.
    shutil.rmtree(SUITE_STATE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    yield
    ck.stop_all(timeout=5)
    # Kernels and their workers end first: one still running could write keys after the reset below. A kernel
    # follows its runner within ~4 s, its workers 0.5 s later (8 s by default).
    wait_until_gone(lambda: [p for p in started_by_suite() if "redis-server" not in " ".join(p.info["cmdline"] or [])],
                    every=0.2)  # each look reads every process's environment
    try:
        url = broker.current().url
        for prefix in (namespace.prefix(), f"cktestother{os.getpid()}:"):  # this process's namespaces only
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("COURSEKIT_NAMESPACE", prefix)
                namespace.reset(url)
    except ck.CourseError:
        pass
    rabbit_url, _ = rabbit.find()
    for prefix in (namespace.prefix(), f"cktestother{os.getpid()}:"):
        try:
            rabbit_url and rabbit.drop_namespace(rabbit_url, prefix)  # its exchanges; its queues expire
        except Exception:  # no RabbitMQ, or it went away: nothing of ours is left there to delete
            pass
    broker.down()
    left = wait_until_gone(started_by_suite, seconds=3, every=0.2)
    for proc in left:
        proc.kill()
    shutil.rmtree(SUITE_STATE, ignore_errors=True)
    assert not left, "processes started by the suite outlived it: " + \
        "; ".join(f"{p.pid} {' '.join(p.info.get('cmdline') or [])[:120]}" for p in left)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The broker the course resolves here (the machine's Redis in CI, else the embedded one)."""
    return ck.up().url


@pytest.fixture
def clean_namespace(redis_url):
    namespace.reset(redis_url)
    yield
    namespace.reset(redis_url)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    found = broker.rabbitmq()
    if found is None:
        missing("RabbitMQ does not answer on 127.0.0.1:5672")
    return found.url


@pytest.fixture
def private_state(tmp_path, monkeypatch):
    """A state folder of its own, for tests that start and stop an embedded broker. It sits inside the
    suite's folder so that the leak check recognises a redis-server left running there."""
    folder = Path(tempfile.mkdtemp(dir=SUITE_STATE, prefix="private-"))
    monkeypatch.setenv("COURSEKIT_STATE_DIR", str(folder))
    yield folder
    broker.down()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder on the import path where a test writes task modules, as a learner does with %%writefile."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def taken_port():
    """A loopback port something is listening on, for the "port taken" messages."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
