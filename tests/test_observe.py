"""The recorder, asserted on DataFrames from real runs."""
from __future__ import annotations

import time

import pandas as pd
import pytest

import coursekit as ck
from coursekit import plots
from coursekit.labs.first import add, app, nap

LAB = "coursekit.labs.first"


@pytest.fixture(scope="module")
def six_naps():
    """Six 0.5 s tasks on concurrency 2, then one pool child killed and replaced."""
    ck.up()
    with ck.record(app) as rec:
        with ck.Worker(LAB, concurrency=2) as w:
            naps = [nap.delay(0.5) for _ in range(6)]
            for r in naps:
                ck.get(r)
            rec.settle(*naps)  # a result is stored before the worker's last events about it arrive
            killed = w.kill_child()
            deadline = time.monotonic() + 10
            while (killed in w.children or len(w.children) < 2) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.6)  # at least two memory samples of the new child
    return rec.recording, killed


def test_overlap_is_the_concurrency(six_naps):
    rec, _ = six_naps
    tasks = rec.tasks
    assert len(tasks) == 6 and (tasks.state == "SUCCESS").all()
    assert rec.max_overlap() == 2
    assert tasks.pid.nunique() == 2, "each run is attributed to the pool child that ran it"
    assert (tasks.sent <= tasks.received).all() and (tasks.started <= tasks.finished).all()
    assert tasks.runtime.between(0.45, 2.0).all()


def test_a_killed_child_shows_up_as_a_new_pid(six_naps):
    rec, killed = six_naps
    children = rec.memory[rec.memory.role == "child"]
    assert killed in set(children.pid)
    # The two children, and the one that replaced the killed child; a loaded machine may show one more, a process
    # the worker forked at boot and that lived for one sample (CI saw it 0.77 s in, never again).
    assert children.pid.nunique() >= 3
    newest = children.groupby("pid").t.min().idxmax()
    assert newest != killed and children[children.pid == killed].t.max() <= children[children.pid == newest].t.min()


def test_replay_equals_the_original(six_naps, tmp_path):
    rec, _ = six_naps
    again = ck.load_recording(rec.save(tmp_path / "rec.json"))
    for frame in ("tasks", "runs", "events_df", "queues", "priority_lists", "memory", "cpu"):
        pd.testing.assert_frame_equal(getattr(rec, frame), getattr(again, frame))
    assert again.max_overlap() == rec.max_overlap()


def test_every_plot_draws_from_a_real_recording(six_naps):
    rec, _ = six_naps
    for draw in (plots.timeline, plots.queue_depth, plots.states, plots.memory, plots.retries):
        fig = draw(rec)
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel()
        assert ax.has_data(), f"{draw.__name__} drew nothing"
    lanes = [t.get_text() for t in plots.timeline(rec).axes[0].get_yticklabels()]
    assert len(lanes) == 2


def test_all_priorities_are_counted_in_the_depth(clean_namespace):
    with ck.record(app, interval=0.1) as rec:
        for priority in (0, 3, 6, 9, None):
            add.apply_async((1, 1), priority=priority)
        time.sleep(0.5)
    depth = rec.recording.queues
    assert depth[depth.queue == "first"].depth.iloc[-1] == 5
    assert set(rec.recording.tasks.priority.dropna()) == {0, 3, 6, 9}


def test_each_priority_list_is_sampled_and_replayed(clean_namespace, tmp_path):
    """On Redis a queue is one list per priority step; the recorder counts each (their sum is the depth), and a
    saved recording keeps them."""
    with ck.record(app, interval=0.1) as rec:
        for priority in (0, 1, None, 4, 7, 12):
            add.apply_async((1, 1), priority=priority)
        time.sleep(0.5)
    lists = rec.recording.priority_lists
    last = lists[lists.t == lists.t.max()]
    assert dict(zip(last.priority, last.depth)) == {0: 3, 3: 1, 6: 1, 9: 1}
    depth = rec.recording.queues
    assert depth[depth.t == lists.t.max()].depth.tolist() == [6]
    again = ck.load_recording(rec.recording.save(tmp_path / "lists.json"))
    pd.testing.assert_frame_equal(again.priority_lists, lists)


def test_no_worker_gives_empty_frames_and_a_note(clean_namespace):
    with ck.record(app) as rec:
        time.sleep(0.3)
    recording = rec.recording
    assert recording.runs.empty and recording.memory.empty
    assert any("no worker sent events" in note for note in recording.notes)


def test_recorder_survives_the_broker_going_away():
    with ck.PrivateRedis() as private:
        private_app = ck.make_app("gap", broker_url=private.url)
        recorder = ck.record(private_app, interval=0.1)
        time.sleep(0.4)
        private.stop()
        time.sleep(1.0)
        with ck.PrivateRedis(port=private.port):
            time.sleep(2.5)  # the receiver reconnects within about a second
            recording = recorder.stop()
    assert len(recording.gaps) >= 1
    start, end = recording.gaps[0]
    assert 0.3 < start < 1.0 and end is not None and end > start
    after = recording.queues[recording.queues.t > end]
    assert not after.empty, "sampling resumed after the broker came back"


def test_a_flood_hits_the_cap_without_freezing(clean_namespace):
    rec = ck.record(app, max_events=50)
    for _ in range(200):
        add.delay(1, 1)
    time.sleep(0.5)
    recording = rec.stop()
    assert len(recording.events) == 50 and recording.dropped >= 100
    assert any("dropped" in note for note in recording.notes)


def test_dashboard_draws_frames_and_stops_by_itself(six_naps):
    from coursekit.observe import Recorder

    rec, _ = six_naps
    replay = Recorder(app)  # not started: a dashboard over a finished recording
    replay.recording = rec
    board = ck.live(replay, draw=plots.timeline, hz=4, duration=1.0)
    board._thread.join(timeout=5)
    assert not board._thread.is_alive(), "the dashboard outlived its duration"
    assert board.frames == 1, "an unchanged recording is drawn once, not at every tick"
    board.stop()
    assert bytes(board.image.value[:4]) == b"\x89PNG" and board.frames == 2
    assert board.view.full_redraws == 1, "a stable layout is drawn once; later frames only blit the data"


def test_events_are_kept_compact(six_naps):
    rec, _ = six_naps
    from coursekit.observe import Recording

    events_only = Recording(started_at=rec.started_at, events=list(rec.events))
    assert events_only.size_bytes() / len(rec.events) < 600, "a decoded event dict alone takes ~1 KB"
    assert rec.events[0].get("no-such-field") is None and rec.events[0]["type"]


def test_every_plot_of_a_real_recording_is_legible(six_naps):
    rec, _ = six_naps
    for draw in (plots.timeline, plots.queue_depth, plots.states, plots.memory, plots.retries):
        layout = draw(rec).all_facts()["layout"]
        assert not any(layout.values()), f"{draw.__name__}: {layout}"


def test_settle_waits_for_the_events_of_every_run(clean_namespace):
    recorder = ck.record(app)
    with ck.Worker(LAB) as w:
        assert "queues ['first']" in repr(w), "a printed worker names the queue it reads"
        results = [nap.delay(0.2) for _ in range(3)]
        for r in results:
            ck.get(r)
        recording = recorder.settle(*results)
        assert recording.settled([r.id for r in results])
        runs = recording.runs
        assert len(runs) == 3 and set(runs.outcome) == {"SUCCESS"}
        recorder.settle("no-such-task", timeout=0.3)
    assert any("still missing" in note for note in recorder.stop().notes)


def test_cpu_use_is_sampled_per_worker(clean_namespace):
    """A worker that computes shows the CPU its task reported using, in its pool child, and not more than one core
    (one child computes); one that waits beside it shows next to none. Sums of CPU seconds, not peaks: on a
    loaded machine a busy loop gets whatever share of a core the others leave, and its own count says which."""
    from coursekit.labs.pools import app as pools_app, crunch

    busy = ck.Worker("coursekit.labs.pools", name="busy", queues=["pools.busy"], pool="prefork", concurrency=1)
    idle = ck.Worker("coursekit.labs.pools", name="idle", queues=["pools.idle"], pool="solo")
    ck.start_all(busy, idle)
    with busy, idle:
        with ck.record(pools_app, interval=0.1) as rec:
            time.sleep(0.3)  # a first sample of each worker: CPU is counted from the next one
            reported = ck.get(crunch.apply_async((10,), queue="pools.busy"), timeout=30)["cpu"]
            time.sleep(0.3)
    cpu = rec.recording.cpu
    used = cpu.groupby("node").cpu_s.sum()
    assert set(used.index) == {busy.nodename, idle.nodename}, used
    assert 0.8 * reported <= used[busy.nodename] <= reported + 0.5, (reported, used)
    assert used[idle.nodename] <= max(0.25, 0.2 * reported), (reported, used)
    mine = cpu[cpu.node == busy.nodename]
    over_half_a_second = mine.cpu_s.rolling(5).sum() / mine.t.diff().rolling(5).sum()
    assert over_half_a_second.max() <= 1.15, mine  # one thread: at most one core, give or take a clock tick
    assert (cpu.cores >= 0).all() and (cpu.t.diff().dropna() >= 0).all()


def _events(*spec):
    """Hand-written events of one task on one worker: (type, t) or (type, t, {field: value})."""
    from coursekit.observe.events import EventType as E

    return [{"type": E[kind].value, "uuid": "t1", "name": "storm", "hostname": "w@h", "pid": 1, "t": t,
             **(extra[0] if extra else {})} for kind, t, *extra in spec]


RUN_PAIRINGS = {
    # CI, lesson 02's jitter storm: a retry due at once started on a second pool child before the first child's
    # task-retried event; a later copy of the same retry is a redelivery
    "retry-starts-before-its-retried-event": (
        _events(("RECEIVED", 0.0, {"retries": 0}), ("STARTED", 0.0), ("RECEIVED", 0.29, {"retries": 1}),
                ("STARTED", 0.30), ("RETRIED", 0.31), ("SUCCEEDED", 0.5, {"runtime": 0.2}),
                ("RECEIVED", 1.9, {"retries": 1}), ("STARTED", 2.0), ("SUCCEEDED", 2.1, {"runtime": 0.1})),
        [("first", "RETRY"), ("retry", "SUCCESS"), ("redelivery", "SUCCESS")]),
    "the-same-without-retries-known": (
        _events(("STARTED", 0.0), ("STARTED", 0.30), ("RETRIED", 0.31), ("SUCCEEDED", 0.5),
                ("STARTED", 2.0), ("SUCCEEDED", 2.1)),
        [("first", "RETRY"), ("retry", "SUCCESS"), ("redelivery", "SUCCESS")]),
    # acks_late + reject_on_worker_lost: the child is killed (no end event), the message comes back
    "killed-child-redelivered": (
        _events(("RECEIVED", 0.0, {"retries": 0}), ("STARTED", 0.0), ("RECEIVED", 1.0, {"retries": 0}),
                ("STARTED", 1.0), ("SUCCEEDED", 1.5, {"runtime": 0.5})),
        [("first", "LOST"), ("redelivery", "SUCCESS")]),
    "killed-child-redelivered-then-retried": (
        _events(("RECEIVED", 0.0, {"retries": 0}), ("STARTED", 0.0), ("RECEIVED", 1.0, {"retries": 0}),
                ("STARTED", 1.0), ("RETRIED", 1.2), ("RECEIVED", 1.3, {"retries": 1}), ("STARTED", 1.3),
                ("SUCCEEDED", 1.5, {"runtime": 0.2})),
        [("first", "LOST"), ("redelivery", "RETRY"), ("retry", "SUCCESS")]),
    # a redelivery past visibility_timeout runs beside the first copy on the same worker; the first ends first
    "overlapping-copies": (
        _events(("RECEIVED", 0.0, {"retries": 0}), ("STARTED", 0.0), ("RECEIVED", 1.0, {"retries": 0}),
                ("STARTED", 1.0), ("SUCCEEDED", 2.0, {"runtime": 2.0}), ("SUCCEEDED", 3.0, {"runtime": 2.0})),
        [("first", "SUCCESS"), ("redelivery", "SUCCESS")]),
    # a hard time limit: the child is killed, and the worker reports the failure itself
    "time-limit": (
        _events(("RECEIVED", 0.0, {"retries": 0}), ("STARTED", 0.0), ("FAILED", 1.0)),
        [("first", "FAILURE")]),
}


@pytest.mark.parametrize("case", RUN_PAIRINGS)
def test_each_end_closes_the_run_it_belongs_to(case):
    from coursekit.observe.frames import runs_frame

    events, want = RUN_PAIRINGS[case]
    runs = runs_frame(events)
    assert list(zip(runs.kind, runs.outcome)) == want
    if case == "overlapping-copies":
        assert list(runs.ended) == [2.0, 3.0]


def test_frames_of_a_live_recording_survive_its_samplers_appending():
    """A sampler thread appends while a lesson builds a frame: pandas once read a list of 276 rows as 281 (CI,
    lesson 03: ValueError). The frames read a copy; without it this loop raised tens of times in 2 s."""
    import threading

    from coursekit.observe.recording import Recording

    rec = Recording(started_at=time.time())
    going = True

    def sample():
        while going:
            if len(rec.queue_samples) > 20_000:
                del rec.queue_samples[:10_000]
            rec.queue_samples.append((0.0, "q", 1, 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    errors, begun = [], time.monotonic()
    try:
        while time.monotonic() - begun < 2:
            try:
                rec.queues
            except ValueError as exc:
                errors.append(str(exc))
    finally:
        going = False
        sampler.join()
    assert errors == [], errors[:3]
