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
