"""ck.PrivateRedis: a throw-away broker that never outlives the process that started it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import redis
from procs import wait_gone

import coursekit as ck


def test_start_and_stop():
    with ck.PrivateRedis() as private:
        assert redis.Redis.from_url(private.url).ping()
        assert private.url != ck.current().url
        private.stop()
        assert not private.running


def test_dies_with_its_owner_even_when_sigkilled(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent("""
        import time
        import coursekit as ck
        private = ck.PrivateRedis().start()
        print(private.proc.pid, flush=True)
        time.sleep(120)
    """))
    # its data folder in tmp_path: the owner is SIGKILLed, so nothing deletes the folder (it was left in /tmp)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        pid = int(owner.stdout.readline())
        assert psutil.pid_exists(pid)
        owner.kill()
        owner.wait(5)
        assert wait_gone(pid), "the private redis-server outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()


def test_a_first_start_whose_port_was_taken_moves_to_another():
    """free_port() can hand out a port that another process binds before redis-server does: the server answering
    there is then not ours, and a lesson would stop and start someone else's broker (or none)."""
    with ck.PrivateRedis() as other:
        mine = ck.PrivateRedis()
        mine.port, mine.url = other.port, other.url  # the race, made certain
        with mine:
            assert mine.port != other.port
            assert mine._answering_pid() == mine.proc.pid != other.proc.pid


def test_a_restart_on_a_port_someone_took_says_so():
    with ck.PrivateRedis() as mine:
        mine.stop()
        with ck.PrivateRedis(port=mine.port) as thief:
            try:
                mine.start()
            except ck.BrokerError as exc:
                assert f"could not listen on port {mine.port}" in str(exc) and "redis-server" in str(exc)
            else:
                raise AssertionError(f"the restart reported success on the port pid {thief.proc.pid} holds")
            assert not mine.running


def test_a_server_that_exits_at_start_is_not_taken_for_a_busy_port(monkeypatch):
    from coursekit import embedded

    monkeypatch.setattr(embedded, "binary", lambda: "/bin/false")
    try:
        ck.PrivateRedis().start()
    except ck.BrokerError as exc:
        assert "exited at start with code 1" in str(exc), exc
    else:
        raise AssertionError("a redis-server that exited at once was reported started")
