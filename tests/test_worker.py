"""coursekit.Worker: real `celery worker` subprocesses, their options, and their ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import psutil
import pytest

import coursekit as ck
from coursekit.labs.first import add, app, nap, setting, where_am_i

LAB = "coursekit.labs.first"


def group_alive(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def wait_until(predicate, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_start_run_stop(clean_namespace):
    with ck.Worker(LAB) as w:
        assert w.running and w.ready_s is not None
        assert ck.get(add.delay(2, 3)) == 5
        ran_in = ck.get(where_am_i.delay())["pid"]
        assert ran_in in w.children and ran_in != os.getpid()
        assert "ready." in w.logs()
    assert not w.running and w.proc.returncode == 0
    assert group_alive(w.pid) == []


def test_stdout_and_stderr_are_kept_apart_and_together(clean_namespace):
    """Celery prints its banner on stdout and logs every record on stderr; the combined log keeps both."""
    with ck.Worker(LAB) as w:
        assert ck.get(add.delay(2, 3)) == 5
    out, err, both = w.logs(stream="stdout"), w.logs(stream="stderr"), w.logs()
    assert "[config]" in out and "[config]" not in err
    assert "ready." in err and "ready." not in out
    assert "succeeded in" in err and "succeeded in" not in out
    assert sorted(both.splitlines()) == sorted(out.splitlines() + err.splitlines())
    with pytest.raises(ck.WorkerError, match="stream='stdout'"):
        w.logs(stream="out")


def test_kill_ends_the_whole_group(clean_namespace):
    w = ck.Worker(LAB, concurrency=2).start()
    pgid, kids = w.pid, w.children
    assert len(kids) == 2
    w.kill()
    assert w.proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: group_alive(pgid) == [], timeout=5), group_alive(pgid)


def test_drop_held_deletes_what_a_killed_worker_held_of_one_queue_only(clean_namespace):
    """A worker SIGKILLed while it holds prefetched messages leaves them in `unacked`; drop_held(queue) deletes that
    queue's entries and no other queue's; drop_held(task_ids=...) those tasks' entries only."""
    from coursekit import queues

    held_by, behind = {}, {}
    for queue in ("held.a", "held.b"):
        w = ck.Worker(LAB, name=queue.replace(".", "-"), queues=[queue]).start()  # -c 1, prefetch 4
        nap.apply_async((30,), queue=queue)  # acknowledged as it starts (early ack): the 3 behind it stay held
        behind[queue] = [nap.apply_async((0,), queue=queue).id for _ in range(3)]
        def three_held(queue=queue):
            # twice, 0.3 s apart: a message just popped is in neither the queue nor `unacked` for an instant, so
            # "3 held, none waiting" is also seen while the nap(30) is not yet acked and one more is in transit (CI)
            if not (queues.held(app, queue) == 3 and queues.depth(app, queue) == 0):
                return False
            time.sleep(0.3)
            return queues.held(app, queue) == 3 and queues.depth(app, queue) == 0

        assert wait_until(three_held, timeout=10), (queues.held(app, queue), queues.depth(app, queue))
        w.kill()
        held_by[queue] = queues.held(app, queue)
    assert held_by == {"held.a": 3, "held.b": 3}
    assert queues.drop_held(app, "held.a") == 3
    assert queues.held(app, "held.a") == 0 and queues.held(app, "held.b") == 3
    # by task id, whatever the queue (what a check leaves): only the ones named
    assert queues.drop_held(app, task_ids=behind["held.b"][:2] + behind["held.a"]) == 2
    assert queues.held(app, "held.b") == 1
    assert queues.drop_held(app, "held.b") == 1 and queues.unacked(app) == 0


def test_kill_child_is_replaced_by_a_new_pid(clean_namespace):
    with ck.Worker(LAB) as w:
        before = w.children
        killed = w.kill_child()
        assert killed == before[0]
        assert wait_until(lambda: w.children and killed not in w.children, timeout=10)
        assert w.running and ck.get(add.delay(1, 1)) == 2


def test_options_reach_the_worker(clean_namespace):
    with ck.Worker(LAB, name="opts", concurrency=2, prefetch_multiplier=1, queues=["slow", "first"],
                   max_tasks_per_child=1, config={"task_acks_late": True}) as w:
        assert "opts-" in w.nodename and len(w.children) == 2
        stats = app.control.inspect(destination=[w.nodename], timeout=2).stats()[w.nodename]
        assert stats["prefetch_count"] == 2 and stats["pool"]["max-concurrency"] == 2
        assert stats["pool"]["max-tasks-per-child"] == 1
        queues = app.control.inspect(destination=[w.nodename], timeout=2).active_queues()[w.nodename]
        assert {q["name"] for q in queues} == {"slow", "first"}
        assert ck.get(setting.apply_async(("task_acks_late",), queue="slow")) is True
        # max_tasks_per_child=1: every task in a fresh child
        pids = [ck.get(where_am_i.delay())["pid"] for _ in range(3)]
        assert len(set(pids)) == 3
    # the notebook's own app is untouched by a worker's config
    assert app.conf.task_acks_late is False


def test_several_workers_share_one_queue(clean_namespace):
    w1, w2 = ck.Worker(LAB, prefetch_multiplier=1), ck.Worker(LAB, prefetch_multiplier=1)
    ck.start_all(w1, w2)
    try:
        results = [nap.delay(0.3) for _ in range(8)]
        pids = [ck.get(r) for r in results]
        by_worker = Counter("w1" if p in w1.children else "w2" if p in w2.children else "?" for p in pids)
        assert by_worker["?"] == 0 and by_worker["w1"] >= 2 and by_worker["w2"] >= 2, by_worker
    finally:
        ck.stop_all([w1, w2])
    assert not w1.running and not w2.running


def test_worker_follows_its_owner_even_when_sigkilled(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import coursekit as ck
        w = ck.Worker({LAB!r}).start()
        print(w.pid, flush=True)
        time.sleep(120)
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(owner.stdout.readline())
        assert group_alive(worker_pid), "the worker should run while its owner lives"
        owner.kill()
        owner.wait(5)
        assert wait_until(lambda: group_alive(worker_pid) == [], timeout=5), group_alive(worker_pid)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_module_that_does_not_import(workspace):
    with pytest.raises(ck.WorkerError, match="no module named 'no_such_tasks'") as err:
        ck.Worker("no_such_tasks").start()
    assert "%%writefile" in err.value.fix


def test_module_with_a_syntax_error(workspace):
    (workspace / "broken_tasks.py").write_text("import coursekit as ck\napp = ck.make_app('b')\ndef oops(:\n")
    with pytest.raises(ck.WorkerError, match=r"line 3: syntax error"):
        ck.Worker("broken_tasks").start()


def test_module_without_an_app(workspace):
    (workspace / "appless.py").write_text("x = 1\n")
    with pytest.raises(ck.WorkerError, match="defines no Celery app") as err:
        ck.Worker("appless").start()
    assert "make_app" in err.value.fix


def test_unreachable_broker_fails_fast_with_the_log(workspace):
    (workspace / "nowhere.py").write_text(
        "import coursekit as ck\napp = ck.make_app('nowhere', broker_url='redis://127.0.0.1:1/0')\n")
    worker = ck.Worker("nowhere")
    with pytest.raises(ck.WorkerError, match="cannot reach its broker redis://127.0.0.1:1/0") as err:
        worker.start(timeout=20)
    assert "coursekit status" in err.value.fix and worker.proc is None


def test_unregistered_task_gets_a_clear_message(clean_namespace):
    with ck.Worker(LAB):
        with pytest.raises(ck.ResultError, match="does not know a task named 'lesson.not_there'"):
            ck.get(app.send_task("lesson.not_there"), timeout=10)


def test_no_worker_gives_a_clear_message(clean_namespace):
    with pytest.raises(ck.ResultError, match="no worker is running"):
        ck.get(add.delay(1, 2), timeout=0.5)


def test_task_defined_in_a_notebook_cell_is_refused():
    def from_a_cell():
        return 1

    from_a_cell.__module__ = "__main__"
    with pytest.raises(ck.CourseError, match="defined in the notebook itself") as err:
        app.task(from_a_cell)
    assert "%%writefile" in err.value.fix


def test_stop_all_without_waiting_only_asks_and_a_later_stop_all_reaps(clean_namespace):
    w = ck.Worker(LAB).start()
    begun = time.monotonic()
    ck.stop_all([w], wait=False)
    assert time.monotonic() - begun < 0.5, "it waited for the warm shutdown"
    assert w in ck.worker._live, "still listed, so that a later stop_all() reaps it"
    assert wait_until(lambda: not w.running, timeout=15), "the worker did not finish its warm shutdown"
    ck.stop_all()
    assert w.proc.returncode == 0 and w not in ck.live_workers() and group_alive(w.pid) == []


def test_a_killed_worker_leaves_no_temp_folder(clean_namespace, tmp_path, monkeypatch):
    """billiard's pool makes a multiprocessing temp folder (pymp-*) that only a clean exit removes; every check
    SIGKILLs its worker, and each make test left about 500 in /tmp. Now it is the worker's own, removed when it has
    gone (without that, this worker leaves one pymp- folder in TMPDIR)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    w = ck.Worker(LAB, name="tmp").start()
    assert w.pool_tmp.is_dir()
    w.kill()
    assert not w.pool_tmp.exists() and list(tmp_path.glob("pymp-*")) == []
