"""Chapter 06's kill lab, run apart from the lesson on a private redis-server: with Celery's defaults the ledger shows
payments lost, with the right settings all 200 charged (or 199, the one lost in transit as the worker died: see
killlab.vanished), each duplicate a payment that began twice; and after the
kills no process of the lab is alive and no key outside the namespace is left.

`test_kill_lab_five_rounds` is the issue's soak (5 rounds, about 2 minutes): marked `soak` and skipped unless
COURSEKIT_SOAK=1 (`make soak`), so that it does not lengthen `make test`, which runs one round."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from coursekit import PrivateRedis, namespace

RUNNER = Path(__file__).with_name("kill_lab_run.py")


def lab_rounds(rounds: int) -> list[dict]:
    """Run the kill lab `rounds` times on a private Redis; the runs' JSON lines, after checking what is left."""
    with PrivateRedis() as private:
        env = {**os.environ, "COURSEKIT_BROKER_URL": private.url}
        done = subprocess.run([sys.executable, str(RUNNER), str(rounds)], env=env, capture_output=True, text=True,
                              timeout=90 * rounds, cwd=Path(__file__).parent)
        assert done.returncode == 0, done.stderr[-3000:]
        runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        alive = [p.pid for p in psutil.process_iter() if _uses(p, private.url)]
        assert not alive, f"processes of the lab still alive after it ended: {alive}"
        client = redis.Redis.from_url(private.url)
        try:
            outside = [k.decode() for k in client.scan_iter(count=1000)
                       if not k.decode().startswith(namespace.prefix())]
        finally:
            client.close()
        assert not outside, f"keys outside the namespace {namespace.prefix()!r}: {outside[:10]}"
    assert len(runs) == 2 * rounds, done.stdout
    return runs


def _uses(proc: psutil.Process, url: str) -> bool:
    try:
        return proc.environ().get("COURSEKIT_BROKER_URL") == url
    except psutil.Error:
        return False


def judge(runs: list[dict]) -> None:
    for run in runs:
        assert run["kills"] == ["before", "worker", "after"] and not run["problems"], run
        if run["settings"] == "defaults":
            assert run["lost"] >= 1 and run["done"] == 200 - run["lost"], run
        else:
            # nothing lost that a setting can save: at most the one message the killed worker had popped and not yet
            # written to `unacked` (killlab.vanished), which never began
            assert run["done"] == 200 - run["lost"] and run["lost"] == len(run["in_transit"]) <= 1, run
            for order, charges in run["duplicated"].items():
                assert run["starts_of_duplicated"][order] >= charges, run  # each charge came from a run of its own


def test_kill_lab_loses_with_defaults_and_nothing_with_the_right_settings():
    runs = lab_rounds(1)
    if any(run["problems"] or run["kills"] != ["before", "worker", "after"] for run in runs):
        # a kill that could not land where the plan meant, or did not land at all (the machine too busy to time it:
        # CI at half speed saw the batch end before the third kill) tests nothing: once more
        runs = lab_rounds(1)
    judge(runs)


@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("COURSEKIT_SOAK") != "1", reason="the 5-round soak runs with COURSEKIT_SOAK=1 "
                                                                    "(make soak)")
def test_kill_lab_five_rounds():
    runs = lab_rounds(5)
    print("\n".join(json.dumps(r) for r in runs))
    judge(runs)


def test_a_check_that_kills_leaves_nothing(tmp_path):
    """Check 06.no_loss kills its worker three times; with an answer that loses payments (the default
    visibility_timeout parks the dead worker's messages in `unacked` for an hour), the check still leaves no process,
    nothing in `unacked`, no key outside the namespace, and no ledger."""
    from answers import S06N, swap

    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "ex06_no_loss.py").write_text(swap(S06N, "    broker_transport_options={", "    _unused={"))
    with PrivateRedis() as private:
        env = {**os.environ, "COURSEKIT_BROKER_URL": private.url}
        done = subprocess.run([sys.executable, "-m", "coursekit", "check", "06.no_loss", "--workspace", str(ws)],
                              env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path)
        assert "visibility_timeout (3600 s here)" in done.stdout, done.stdout + done.stderr[-2000:]
        alive = [p.pid for p in psutil.process_iter() if _uses(p, private.url)]
        assert not alive, f"processes of the check still alive: {alive}"
        client = redis.Redis.from_url(private.url)
        try:
            keys = [k.decode() for k in client.scan_iter(count=1000)]
            assert client.hlen(f"{namespace.prefix()}unacked") == 0, "the killed workers' messages are still in unacked"
        finally:
            client.close()
        assert all(k.startswith(namespace.prefix()) for k in keys), keys
        assert not [k for k in keys if ":ledger:" in k], keys
