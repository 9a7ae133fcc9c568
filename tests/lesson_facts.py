"""What each lesson's text says its figures and tables show, asserted on the data they drew.

A lesson shows figures (`plots.CourseFigure`) and tables (`facts.table`) whose outputs carry the data they show
(coursekit/facts.py). After the notebook test has run a lesson, `failures(path, shown)` runs every check below
registered for that lesson on `facts.read(executed notebook)`, plus the legibility checks every figure gets.
Each check's docstring quotes the sentence it holds the lesson to. A new chapter adds its checks here.
"""
from __future__ import annotations

from collections.abc import Callable

SAYS: dict[str, list[Callable[[dict], None]]] = {}


def says(stem: str):
    """Register a check for the lesson notebooks/<stem>.ipynb."""
    def register(check):
        SAYS.setdefault(stem, []).append(check)
        return check
    return register


def failures(stem: str, folder: str, shown: dict) -> list[str]:
    """Every broken promise: legibility of every figure, then (for lessons) each check registered for `stem`."""
    checks = [every_figure_is_legible] + (SAYS.get(stem, []) if folder == "notebooks" else [])
    out = []
    if folder == "notebooks" and shown and stem not in SAYS:
        out.append(f"{stem} shows {sorted(shown)} but no check here holds its text to them: add them with @says")
    for check in checks:
        try:
            check(shown)
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as exc:
            sentence = (check.__doc__ or check.__name__).strip().splitlines()[0]
            out.append(f"{check.__name__} ({sentence}): {type(exc).__name__}: {exc}")
    return out


def every_figure_is_legible(shown):
    """No figure has labels that overlap or are cut off, nor marks on or outside its frame, nor marks that hide
    one another."""
    for name, f in shown.items():
        if f["kind"] != "figure":
            continue
        layout = f["layout"]
        assert not layout["overlapping_labels"], f"{name!r}: overlapping labels {layout['overlapping_labels']}"
        assert not layout["cut_off_labels"], f"{name!r}: labels cut off {layout['cut_off_labels']}"
        assert not layout["outside_frame"], f"{name!r}: marks on or outside the frame {layout['outside_frame']}"
        assert layout["overlapping_dots"] == 0, f"{name!r}: {layout['overlapping_dots']} pairs of dots overlap"
        assert f.get("overlapping_bars", 0) == 0, f"{name!r}: {f['overlapping_bars']} pairs of bars overlap"


# -- reading a drawn line -----------------------------------------------------------------------------------
def value_at(line: list[list[float]], t: float) -> float:
    """The value of a step line (its change points, as plots keep them) at time `t`."""
    before = [y for x, y in line if x <= t]
    return before[-1] if before else 0


def values_between(line: list[list[float]], t0: float, t1: float) -> set[float]:
    """Every value a step line takes from t0 to t1."""
    return {value_at(line, t0)} | {y for x, y in line if t0 < x < t1}


def rows(shown: dict, name: str) -> list[dict]:
    return shown[name]["rows"]


# -- 00 setup -----------------------------------------------------------------------------------------------
QUEUE_00 = "This lesson's queue: one message waits until the worker starts"
TRIPS_00 = "The ten round trips, on the process that ran them"


@says("00_setup")
def one_message_waits_until_the_worker_starts(shown):
    """"the message we sent before there was a worker waited in it until the worker started, then the queue was
    empty" """
    line = shown[QUEUE_00]["lines"]["first: waiting"]
    assert "unacked (held by workers)" not in shown[QUEUE_00]["lines"], "the lesson has not explained unacked yet"
    assert max(y for _, y in line) == 1, f"the queue held more than one message: {line}"
    first = next(i for i, (_, y) in enumerate(line) if y > 0)
    assert line[first + 1][0] - line[first][0] >= 0.25, f"the message was not seen waiting in two samples: {line}"
    assert line[-1][1] == 0, "the queue is not empty at the end"


@says("00_setup")
def each_bar_is_one_round_trip(shown):
    """"Each bar is one task run, on the pool child that ran it" (the ten round trips)"""
    bars = shown[TRIPS_00]["bars"]
    assert len(bars) == 10, f"{len(bars)} bars for ten round trips"
    assert {b["outcome"] for b in bars} == {"SUCCESS"} and {b["name"] for b in bars} == {
        "coursekit.labs.first.where_am_i"}
    assert len({b["lane"] for b in bars}) == 1, "one pool child ran them all"
    starts = [b["x0"] for b in bars]
    assert starts == sorted(starts), "one after another"


# -- 01 calling ---------------------------------------------------------------------------------------------
QUEUES_01 = "Queues and workers during this lesson"
SAMPLE = 0.25  # the recorder's sampling interval (observe.Recorder)
RUNS_01 = "Task runs during this lesson"


def _stamps(shown) -> dict[str, dict]:
    """The three stamp tasks of section 4 in the tasks table, by how they were sent (in sending order)."""
    stamps = sorted((r for r in rows(shown, "tasks") if r["name"].endswith(".stamp")), key=lambda r: r["sent"])
    assert len(stamps) == 3, f"{len(stamps)} stamp tasks in the table"
    return dict(zip(["delay()", "countdown=2", "eta=now+3s"], stamps))


@says("01_calling")
def every_task_ends_in_the_same_state_every_run(shown):
    """The tasks table shows the same states on every run; "The expired task has no `started`" """
    states = sorted((r["name"].rsplit(".", 1)[-1], r["state"]) for r in rows(shown, "tasks"))
    assert states == sorted([("add", "SUCCESS")] * 3 + [("add", "REVOKED"), ("divide", "FAILURE")] +
                            [("stamp", "SUCCESS")] * 3), states
    expired = next(r for r in rows(shown, "tasks") if r["state"] == "REVOKED")
    assert expired["started"] is None


@says("01_calling")
def countdown_and_eta_are_held_long_before_they_start(shown):
    """"The countdown and eta tasks were `received` long before they `started`" """
    for label in ("countdown=2", "eta=now+3s"):
        row = _stamps(shown)[label]
        assert row["started"] - row["received"] >= 1.5, f"{label}: received {row['received']}, started {row['started']}"


@says("01_calling")
def no_task_runs_before_its_time(shown):
    """countdown and eta: "not before" the time asked for (the delays table)"""
    for row in rows(shown, "delays"):
        assert row["ran at s"] >= row["asked delay s"], row


@says("01_calling")
def unacked_rises_while_countdown_and_eta_wait(shown):
    """"the unacknowledged line rises to 2 while the waiting line stays at 0, and the running line moves only
    when each task's time comes" """
    lines = shown[QUEUES_01]["lines"]
    stamps = _stamps(shown)
    # queues are sampled every SAMPLE s: the first sample after both were received is the first to count them
    held_from = max(stamps["countdown=2"]["received"], stamps["eta=now+3s"]["received"]) + SAMPLE + 0.05
    held_to = stamps["countdown=2"]["started"] - 0.05
    assert values_between(lines["unacked (held by workers)"], held_from, held_to) == {2}
    assert values_between(lines["calling: waiting"], held_from, held_to) == {0}
    assert values_between(lines["running (from events)"], held_from, held_to) == {0}


@says("01_calling")
def messages_pile_up_then_drain(shown):
    """"the messages piling up while no worker ran, the drain when it started" """
    waiting = shown[QUEUES_01]["lines"]["calling: waiting"]
    bars = sorted(shown[RUNS_01]["bars"], key=lambda b: b["x0"])
    assert max(y for x, y in waiting if x < bars[0]["x0"]) == 3, waiting
    drained = max(b["x1"] for b in bars[:2]) + SAMPLE + 0.05  # r1 and r2 ran (x was revoked, not run)
    assert value_at(waiting, drained) == 0 and waiting[-1][1] == 0, waiting


@says("01_calling")
def one_bar_per_run_and_the_failure_shows(shown):
    """"one bar per run, a red one for `divide(1, 0)`" """
    bars = shown[RUNS_01]["bars"]
    assert len(bars) == 7, f"{len(bars)} bars for 7 runs"
    assert sorted(b["outcome"] for b in bars) == ["FAILURE"] + ["SUCCESS"] * 6
    assert next(b for b in bars if b["outcome"] == "FAILURE")["name"].endswith(".divide")
    assert len({b["lane"] for b in bars}) == 1


@says("01_calling")
def a_dead_broker_raises_once_the_policy_is_used_up(shown):
    """"With it down, the call raises ... once the retry policy is used up: `max_retries=0` gives up at once, the
    default policy printed above waits 0 + 0.2 + 0.4 s, and a longer policy waits longer" """
    up, none, default, longer = rows(shown, "outage")
    assert up["outcome"] == "sent" and {r["outcome"] for r in (none, default, longer)} == {"raised OperationalError"}
    assert default["seconds"] >= 0.6 - 0.01 and longer["seconds"] >= 1.5 - 0.01, "a policy's waits were cut short"
    assert none["seconds"] < default["seconds"] < longer["seconds"] and up["seconds"] < default["seconds"]


# -- 02 retries ---------------------------------------------------------------------------------------------
ATTEMPTS_02 = "Attempts of shaky, backoff_exact and late_retry"


@says("02_retries")
def shaky_runs_three_times_under_one_id(shown):
    """"publishes a new message with the same task id ... the current run ends in state RETRY" """
    table = rows(shown, "shaky runs")
    assert [r["attempt"] for r in table] == [1, 2, 3]
    assert [r["kind"] for r in table] == ["first", "retry", "retry"]
    assert [r["outcome"] for r in table] == ["RETRY", "RETRY", "SUCCESS"]
    assert len({r["task_id"] for r in table}) == 1
    assert all(r["gap_s"] >= 0.49 for r in table[1:]), "a retry ran before its 0.5 s countdown"


@says("02_retries")
def both_ran_three_times(shown):
    """"Both ran 3 times (the first run plus `max_retries=2`)" """
    table = {r["call"]: r for r in rows(shown, "when retries run out")}
    assert [r["attempts"] for r in table.values()] == [3, 3]
    assert {r["state"] for r in table.values()} == {"FAILURE"}
    assert table["self.retry(exc=exc)"]["get() raised"] == "ValueError"
    assert table["self.retry()"]["get() raised"] == "MaxRetriesExceededError"


@says("02_retries")
def backoff_waits_follow_the_formula(shown):
    """"the countdown is `retry_backoff * 2 ** n`" (measured bars beside the formula's)"""
    bars = shown["Wait after each failure: measured and formula"]["bars"]
    measured, formula = bars["measured on the worker"], bars["retry_backoff * 2 ** retries"]
    assert [h for _, h in formula] == [1, 2]
    for (_, got), (_, want) in zip(measured, formula):
        assert want - 0.02 <= got < want + 0.5, f"waited {got} s for a countdown of {want} s"


@says("02_retries")
def jitter_spreads_the_storm(shown):
    """"Without jitter no retry starts before its 2 s countdown has run out ... when the worker got through the 40
    first attempts within a second ..., the jittered retries spread over a wider window than the unjittered ones"
    (CI, on a machine at half speed: the first attempts took seconds, and the unjittered window was the wider)"""
    figure = shown["When the 20 retries started"]
    bars = figure["bars"]
    used = {label: [x for x, h in bars[label] if h > 0] for label in ("jitter off", "jitter on")}
    for label in used:
        assert sum(h for _, h in bars[label]) == 20, f"{label}: not every retry is in the histogram"
    assert min(used["jitter off"]) >= 1.75, f"without jitter a retry started in the bin at {min(used['jitter off'])} s"
    first, last = figure["first_attempts_ended"]
    if last - first <= 1.0:
        assert max(used["jitter on"]) - min(used["jitter on"]) > max(used["jitter off"]) - min(used["jitter off"]), (
            used, figure["first_attempts_ended"])


@says("02_retries")
def the_retry_ran_more_than_once_when_its_countdown_ended(shown):
    """"The task retried once, yet the retry ran more than once ... ran it when the countdown ended" """
    table = rows(shown, "late_retry runs")
    first, copies = table[0], table[1:]
    assert (first["kind"], first["outcome"]) == ("first", "RETRY")
    assert len(copies) >= 2, f"the retry ran {len(copies)} time(s)"
    assert {r["outcome"] for r in copies} == {"SUCCESS"}
    assert {r["kind"] for r in copies} <= {"retry", "redelivery"}
    assert all(r["started"] >= first["started"] + 3 - 0.02 for r in copies), "a copy ran before the countdown"


@says("02_retries")
def the_plot_counts_the_runs_the_table_lists(shown):
    """"marked `×N` for N runs ... the dots count the same runs as the table above"; gaps of about 0.5 s, 1 and 2 s,
    3 s; "a copy handed out just after the countdown ended starts a moment later" (under half a second)"""
    tasks = {t["name"].rsplit(".", 1)[-1]: t for t in shown[ATTEMPTS_02]["tasks"].values()}
    late = tasks["late_retry"]
    table = rows(shown, "late_retry runs")
    assert late["runs"] == len(table) == sum(m["count"] for m in late["marks"]), (late, len(table))
    assert [m["count"] for m in late["marks"]][0] == 1, "the first attempt is a dot of its own"
    for name, waits in (("shaky", [0.5, 0.5]), ("backoff_exact", [1, 2]), ("late_retry", [3])):
        xs = [m["x"] for m in tasks[name]["marks"]]
        gaps = [b - a for a, b in zip(xs, xs[1:])]
        if name == "late_retry":  # copies of the one retry that started a moment after the others
            gaps, late_copies = gaps[:1], gaps[1:]
            assert all(g < 0.5 for g in late_copies), f"late_retry: copies {late_copies} s after the retry"
        assert len(gaps) == len(waits), (name, gaps)
        assert len(tasks[name]["gap_labels"]) == len(xs) - 1, (name, tasks[name]["gap_labels"])
        assert all(w - 0.02 <= g < w + 0.5 for g, w in zip(gaps, waits)), f"{name}: gaps {gaps}, said {waits}"


# -- 03 workers ---------------------------------------------------------------------------------------------
BURST_03 = "Ten 0.2 s naps on two workers, -c 1 each"
TIMING_03 = "Eight 0.2 s naps at -c 1 (worker one) and at -c 4 (worker four)"
DEFAULTS_03 = "Defaults (multiplier 4, early ack): one 2.5 s nap, then eight 0.1 s naps"
FIXED_03 = "acks_late and multiplier 1: the same tasks"
ROUTING_03 = "Messages waiting, before and after a worker reads spreading.slow"
HOSTS_03 = "Eight 0.2 s naps: a on this host, far on another"


def _lanes(bars: list[dict]) -> dict[str, list[dict]]:
    """A timeline's bars by lane ('a pid 123'), each lane's in time order."""
    out: dict[str, list[dict]] = {}
    for bar in sorted(bars, key=lambda b: b["x0"]):
        out.setdefault(bar["lane"], []).append(bar)
    return out


def _worker_of(lane: str) -> str:
    return lane.split(" pid ")[0].split("@")[0]


@says("03_workers")
def each_message_went_to_exactly_one_worker(shown):
    """"Ten tasks, ten runs, ten task ids: each message went to exactly one worker, and none ran twice";
    one lane per pool process (-c 1: one process per worker)"""
    table = rows(shown, "who ran the burst")
    assert sum(r["tasks"] for r in table) == sum(r["runs"] for r in table) == 10, table
    assert {r["worker"] for r in table} <= {"a", "b"} and all(r["processes"] == 1 for r in table), table
    bars = shown[BURST_03]["bars"]
    assert len(bars) == 10 and len({b["task_id"] for b in bars}) == 10, f"{len(bars)} bars"
    lanes = _lanes(bars)
    assert {_worker_of(lane) for lane in lanes} == {r["worker"] for r in table} and len(lanes) == len(table)
    assert {_worker_of(lane): len(b) for lane, b in lanes.items()} == {r["worker"]: r["tasks"] for r in table}


@says("03_workers")
def no_c_means_every_cpu_of_the_machine(shown):
    """"No -c ... the worker takes os.cpu_count() ... as the first table shows, though `nodash` may run on one
    only"; -c auto: the CPUs it may run on
    capped at the cgroup quota, rounded up; prefetch_count = multiplier (4) x concurrency; strategy `fair` for every
    worker, none started with -O fair"""
    import math

    machine = rows(shown, "this machine's CPUs")[0]
    table = {r["worker"]: r for r in rows(shown, "what each worker reports")}
    assert table["nodash"]["pool.max-concurrency"] == machine["os.cpu_count()"]
    allowed, quota = table["auto"]["CPUs it may run on"], machine["cgroup_cpu_quota()"]
    assert table["nodash"]["CPUs it may run on"] == allowed == 1, "both may run on one CPU only (Linux)"
    expected = allowed if quota is None else min(allowed, max(1, math.ceil(quota)))
    assert table["auto"]["pool.max-concurrency"] == expected, (table["auto"], machine)
    assert [table[w]["pool.max-concurrency"] for w in ("a", "b", "one", "four")] == [1, 1, 1, 4]
    assert all(r["prefetch_count"] == 4 * r["pool.max-concurrency"] for r in table.values()), table
    assert {r["pool.writes.strategy"] for r in table.values()} == {"fair"}
    assert not any("-O" in r["started with"] for r in table.values())


@says("03_workers")
def four_processes_ran_the_burst_four_at_a_time(shown):
    """"`four` ran the burst four at a time, on its four lanes; `one` ran it one after another, and took the longer
    time" """
    table = {r["worker"]: r for r in rows(shown, "the same burst at -c 1 and -c 4")}
    one, four = table["one"], table["four"]
    assert one["tasks"] == four["tasks"] == 8
    assert (one["processes used"], one["most at once"]) == (1, 1), one
    assert (four["processes used"], four["most at once"]) == (4, 4), four
    took = "first start to last end (s)"
    # "the longer time", no ratio: CI saw 2.09 s against 1.12 s with five test processes on two cores
    assert one[took] > four[took], f"-c 1 took {one[took]} s, -c 4 {four[took]} s"
    lanes = _lanes(shown[TIMING_03]["bars"])
    assert sorted(_worker_of(lane) for lane in lanes) == ["four"] * 4 + ["one"], sorted(lanes)
    assert sorted(len(b) for lane, b in lanes.items() if _worker_of(lane) == "one") == [8]
    one_bars = next(b for lane, b in lanes.items() if _worker_of(lane) == "one")
    assert all(later["x0"] >= earlier["x1"] - 0.01 for earlier, later in zip(one_bars, one_bars[1:])), "overlap"


def _long_and_short(bars: list[dict]) -> tuple[dict, str, list[dict], list[dict]]:
    """The long nap's bar, its lane, the short naps on that lane and those on the other lane."""
    long = max(bars, key=lambda b: b["x1"] - b["x0"])
    assert long["x1"] - long["x0"] >= 2.4, f"the longest bar lasts {long['x1'] - long['x0']:.2f} s"
    short = [b for b in bars if b is not long]
    assert len(short) == 8 and all(b["x1"] - b["x0"] < 1.0 for b in short)
    return (long, long["lane"], [b for b in short if b["lane"] == long["lane"]],
            [b for b in short if b["lane"] != long["lane"]])


@says("03_workers")
def with_the_defaults_short_tasks_wait_behind_the_long_one(shown):
    """"the short tasks wait behind the long one inside one worker, and the other worker has nothing to do"; "The
    stretches show them as `reserved` on the busy worker while the other worker's `running` and `reserved` are
    both 0"; at most prefetch_count = 4 x 1 of them"""
    long, lane, behind, others = _long_and_short(shown[DEFAULTS_03]["bars"])
    assert behind, "the busy worker took none of the short tasks"
    assert all(b["x0"] >= long["x1"] - 0.01 for b in behind), "a short task on the busy worker ran beside the long one"
    assert others and max(b["x1"] for b in others) < long["x1"], "the other worker was not idle before the long ended"
    busy = _worker_of(lane)
    other = ({_worker_of(b["lane"]) for b in others} - {busy}).pop()
    table = rows(shown, "held with the defaults")
    assert any(r[f"{busy} reserved"] >= 1 and r[f"{other} running"] == 0 and r[f"{other} reserved"] == 0
               for r in table), table
    assert 1 <= max(r[f"{busy} reserved"] for r in table) <= 4, table
    assert all(r[f"{busy} running"] <= 1 and r[f"{other} running"] <= 1 for r in table)


@says("03_workers")
def acks_late_and_multiplier_one_spread_the_short_tasks(shown):
    """"the busy worker holds only the task it runs (its `reserved` stays 0), and while it runs, the short tasks go
    to the worker that is free: none waits behind the long one" """
    long, lane, behind, others = _long_and_short(shown[FIXED_03]["bars"])
    early = [b for b in behind if b["x0"] < long["x1"] - 0.05]
    assert not early, f"{len(early)} short tasks started on the busy worker before the long one ended"
    assert others and len({b["lane"] for b in others}) == 1
    busy = _worker_of(lane)
    table = rows(shown, "held with acks_late and multiplier 1")
    assert {r[f"{busy} reserved"] for r in table} == {0}, table
    assert all(r[f"{busy} running"] <= 1 for r in table), table


@says("03_workers")
def an_unread_queue_waits_until_its_worker_starts(shown):
    """"The naps ran at once on `a` and `b`. The crunches and the detour waited in `spreading.slow`, the flat line
    in the plot ... until worker `slow` started with `-Q spreading.slow` and drained it" """
    table = {r["task"]: r for r in rows(shown, "who ran what")}
    assert table["crunch (task_routes)"] == {"task": "crunch (task_routes)", "a": 0, "b": 0, "slow": 4}
    assert table["nap (queue=spreading.slow)"] == {"task": "nap (queue=spreading.slow)", "a": 0, "b": 0, "slow": 1}
    naps = table["nap (default queue)"]
    assert naps["slow"] == 0 and naps["a"] + naps["b"] == 6, naps
    lines = shown[ROUTING_03]["lines"]
    slow, default = lines["spreading.slow: waiting"], lines["spreading: waiting"]
    starting = lines["worker slow starting"][0][0]
    full = next(x for x, y in slow if y == 5)
    assert starting - full >= 0.7, f"the slow queue was full from {full}, its worker started at {starting}"
    assert values_between(slow, full, starting) == {5}, slow
    assert value_at(default, starting) == 0, default
    assert slow[-1][1] == 0, slow


@says("03_workers")
def two_workers_one_name_and_only_the_asker_warns(shown):
    """"Both workers started and both answered ... `inspect()` merges replies ... raises
    `DuplicateNodenameWarning` ... their logs say nothing" """
    table = {r["what"]: r["count"] for r in rows(shown, "two workers, one name")}
    assert table == {"workers running, each with its own main process": 2, "node names among them": 1,
                     "replies to control.ping()": 2, "nodes in inspect().ping()": 1,
                     "DuplicateNodenameWarning raised in this kernel": 1,
                     "lines about it in the two workers' logs": 0}, table


@says("03_workers")
def another_host_changes_nothing_in_celery(shown):
    """"Nothing changed in Celery: the same competing consumers, each message once ... the node name carries the
    other host's name" (only where the machine could make another host; the lesson says when it could not)"""
    if "one worker here, one on another host" not in shown:
        assert HOSTS_03 not in shown
        return
    table = rows(shown, "one worker here, one on another host")
    assert sum(r["tasks"] for r in table) == sum(r["runs"] for r in table) == 8, table
    assert {r["worker"] for r in table} <= {"a", "far"} and len({r["host"] for r in table}) == len(table), table
    bars = shown[HOSTS_03]["bars"]
    assert len(bars) == 8 and len({b["task_id"] for b in bars}) == 8
    assert all("@" in b["lane"] for b in bars), "lanes name their host"


# -- 04 priorities ------------------------------------------------------------------------------------------
LISTS_04 = "Redis: the eight jobs in the queue's four lists"
REDIS_ORDER_04 = "Redis: the order the worker ran them"
RABBIT_04 = "RabbitMQ run order"
BUSY_04 = "The urgent job behind a busy worker"
SENT_04 = ["p9", "p6", "p3", "p1", "none", "p0", "p5", "p12"]
ON_REDIS_04 = ["p1", "none", "p0", "p3", "p5", "p6", "p9", "p12"]
ON_RABBIT_04 = ["p12", "p9", "p6", "p5", "p3", "p1", "none", "p0"]


def _in_order(bars: list[dict], lane: str | None = None) -> list[str]:
    """The labels of a timeline's bars (of one lane), in the order they started."""
    return [b["label"] for b in sorted(bars, key=lambda b: b["x0"]) if lane is None or b["lane"] == lane]


@says("04_priorities")
def four_lists_hold_the_eight_jobs(shown):
    """"One queue, four Redis lists ... p1, none and p0 share the first list, in the order they were sent; the job
    with no priority was stored as priority 0; p12 kept its 12 in the message but went to the list of 9, behind
    p9. (`LLEN` on the queue's name counts the first list only: 3 of the 8 messages.)" """
    table = rows(shown, "Redis keys")
    assert len(table) == 4, table
    first = table[0]["Redis key"]
    assert ":" in first and first.endswith("prioritised'"), f"{first}: not the queue's own name, namespaced"
    for row, step in zip(table[1:], (3, 6, 9)):
        assert row["Redis key"] == first[:-1] + f"\\x06\\x16{step}'", (row["Redis key"], first)
    assert [r["jobs, oldest first"] for r in table] == ["p1, none, p0", "p3, p5", "p6", "p9, p12"]
    assert [r["priority in each message"] for r in table] == [[1, 0, 0], [3, 5], [6], [9, 12]]
    assert [r["messages"] for r in table] == [3, 2, 1, 2]


@says("04_priorities")
def the_lists_fill_wait_and_empty_from_the_bottom(shown):
    """"the four lists filling up when the jobs were sent, waiting, then emptying from the bottom: the list of
    priorities 0-2 first, the list of 9 and above last" (the stacked plot), and the dashed line: "the message the
    worker holds unacknowledged while it runs it" """
    figure = shown[LISTS_04]
    layers = figure["stacked"]
    assert list(layers) == ["priority 0-2, none", "priority 3-5", "priority 6-8", "priority 9 and above"]
    assert [max(y for _, y in line) for line in layers.values()] == [3, 2, 1, 2]
    changes = sorted({x for line in layers.values() for x, _ in line})
    total = [(x, sum(value_at(line, x) for line in layers.values())) for x in changes]
    full = next(x for x, y in total if y == 8)
    dropped = next(x for x, y in total if x > full and y < 8)
    assert dropped - full >= 0.2, f"the eight waited only from {full} to {dropped} s"
    emptied = []
    for line in layers.values():
        assert line[-1][1] == 0, "a list still holds messages at the end"
        top = next(i for i, (_, y) in enumerate(line) if y == max(v for _, v in line))
        emptied.append(next(x for x, y in line[top:] if y == 0))
    assert emptied == sorted(emptied) and emptied[0] < emptied[-1], f"lists emptied at {emptied}"
    unacked = figure["lines"]["unacked (held by workers)"]
    assert max(y for _, y in unacked) - unacked[0][1] == 1, unacked


@says("04_priorities")
def redis_runs_zero_first(shown):
    """"The worker ran p1, none, p0, p3, p5, p6, p9, p12: on Redis, 0 is the highest priority" (the Redis
    timeline and the run-order table)"""
    assert _in_order(shown[REDIS_ORDER_04]["bars"]) == ON_REDIS_04
    table = rows(shown, "run order")
    assert [r["sent"] for r in table] == SENT_04
    assert [r["Redis"] for r in table] == ON_REDIS_04
    assert table[1]["Redis"] == "none", "none ran second"


@says("04_priorities")
def rabbitmq_runs_the_highest_number_first_only_with_x_max_priority(shown):
    """"delivered p12, p9, p6, p5, p3, p1, none, p0: the highest number first ... On the queue without the
    argument the order is the order they were sent" (table and timeline, live or replayed)"""
    table = rows(shown, "run order")
    assert [r["RabbitMQ, x-max-priority 10"] for r in table] == ON_RABBIT_04
    assert [r["RabbitMQ, no x-max-priority"] for r in table] == SENT_04
    figure = shown[RABBIT_04]
    assert _in_order(figure["bars"], "x-max-priority 10") == ON_RABBIT_04
    assert _in_order(figure["bars"], "no x-max-priority") == SENT_04
    assert figure["title"].endswith(("(live)", "(replay of a recorded run)")), figure["title"]


@says("04_priorities")
def prefetch_defeats_priority_and_its_own_worker_waits_least(shown):
    """"With Celery's defaults the urgent job ran last, after all four p9 jobs ... ran second, as soon as hold
    ended. On a queue with a worker of its own it did not wait for hold at all: it ran while the busy worker was
    still busy, and waited least of the three"; section 5: longest with the defaults, less with acks_late, least
    on its own queue"""
    table = {r["set-up"]: r for r in rows(shown, "urgent job")}
    defaults, late, own = (table[k] for k in ("defaults", "acks_late + multiplier 1", "a queue and worker of its own"))
    assert (defaults["place among its worker's runs"], defaults["p9 jobs its worker ran before it"]) == ("6 of 6", 4)
    assert (late["place among its worker's runs"], late["p9 jobs its worker ran before it"]) == ("2 of 6", 0)
    assert (own["place among its worker's runs"], own["p9 jobs its worker ran before it"]) == ("1 of 1", 0)
    assert defaults["waited (s)"] > late["waited (s)"] > own["waited (s)"], table
    bars = shown[BUSY_04]["bars"]
    assert _in_order(bars, "defaults") == ["busy"] + ["p9"] * 4 + ["urgent"]
    assert _in_order(bars, "acks_late, multiplier 1") == ["busy", "urgent"] + ["p9"] * 4
    assert _in_order(bars, "bulk queue") == ["busy"] + ["p9"] * 4
    urgent = next(b for b in bars if b["lane"] == "urgent queue")
    busy = next(b for b in bars if b["lane"] == "bulk queue" and b["label"] == "busy")
    assert urgent["x0"] < busy["x1"], "the urgent job waited for the busy worker"


@says("04_priorities")
def round_robin_alternates_and_priority_drains_the_first_queue(shown):
    """"With round_robin the worker alternated between the queues ... (it had just taken hold from hi, so lo came
    first). With priority it took all six from hi, the first queue it reads, before touching lo" """
    table = rows(shown, "queue order")
    rr = [r["round_robin (default)"] for r in table]
    assert rr == ["lo", "hi"] * 6, rr
    assert [r["priority"] for r in table] == ["hi"] * 6 + ["lo"] * 6


# -- 07 duplicates and stuck tasks ---------------------------------------------------------------------------
CHARGES_07 = "Charges per payment, counted by the ledger"
NAPS_07 = "limited_nap(1.5) under soft 0.5 s / hard 1 s limits"
TIMELINE_07 = "The stuck app: which process ran what, and when it stopped"
DEDUP_TASK_S_07 = 4.0 + 0.5
"""slow_charge(order, 4) on the dedup worker: the gateway's 0.5 s, then 4 s more."""


@says("07_duplicates")
def only_the_early_ack_is_charged_once(shown):
    """"Only the early-acknowledged task was charged once. Every other payment was charged at least twice" (and the
    bars are the table's numbers)"""
    table = {r["source"]: r for r in rows(shown, "charges per payment")}
    assert table["early_ack"]["charges in the ledger"] == 1, table["early_ack"]
    for source in ("acks_late", "countdown", "retry", "published_twice"):
        assert table[source]["charges in the ledger"] >= 2, table[source]
    assert table["retry"]["charges in the ledger"] >= 2  # the retry runs the whole task again
    bars = shown[CHARGES_07]["bars"]
    assert [h for _, h in bars["charges in the ledger"]] == [r["charges in the ledger"] for r in table.values()]
    assert [h for _, h in bars["payments meant"]] == [1] * len(table)


@says("07_duplicates")
def dedup_skips_after_success_but_not_two_at_once(shown):
    """"Both at once. The second charge started while the first was still running (compare its start with the 4 s the
    task takes) ... The copy that came after the first run had stored SUCCESS was skipped (the log line above)" """
    charges = rows(shown, "dedup charges")
    assert len(charges) >= 2, charges
    first, second = (r["started (s after sending)"] for r in charges[:2])
    assert 0.8 <= second - first < DEDUP_TASK_S_07, f"charges at {first} and {second} s: not overlapping copies"
    assert charges[0]["process"] != charges[1]["process"], "two copies at once run in two processes"
    skipped = rows(shown, "dedup skipped")
    assert len(skipped) >= 1, "the worker skipped no copy"
    assert all("already completed successfully" in r["copies the worker skipped (its log)"] for r in skipped)


@says("07_duplicates")
def only_set_nx_charges_once(shown):
    """"`pay` charged every delivery. `pay_if_unpaid` caught the late third copy but not the two that overlapped
    ... `pay_once` charged once" """
    table = {r["task"]: r["charges in the ledger"] for r in rows(shown, "idempotent or not")}
    assert table == {"pay": 3, "pay_if_unpaid": 2, "pay_once": 1}, table


@says("07_duplicates")
def inspect_active_shows_the_stuck_task(shown):
    """"`inspect active` asks each worker what it is running, with the arguments, the process and the start time" """
    active = rows(shown, "inspect active")
    assert [r["task"] for r in active] == ["hang"], active
    assert "nightly-report" in active[0]["args"]
    assert 1.0 <= active[0]["running for (s)"] < 10, active


@says("07_duplicates")
def soft_cleans_up_hard_kills_expires_does_not_stop(shown):
    """"`export` failed with `SoftTimeLimitExceeded` after about 1 s and its cleanup ran ... in the same process,
    which lives on. `crunch` failed with `TimeLimitExceeded` after about 1 s; its process is gone ... `hang` with
    `expires=1` ran its full 2 s and succeeded" """
    table = {r["call"]: r for r in rows(shown, "limits")}
    export, crunch, late = (table[k] for k in ("export (soft 1 s, hard 3 s)", "crunch (hard 1 s)", "hang, expires=1"))
    assert (export["state"], export["error"]) == ("FAILURE", "SoftTimeLimitExceeded"), export
    assert 0.95 <= export["ran for (s)"] < 2.0 and export["cleanup ran"] and export["process still in the pool"]
    assert (crunch["state"], crunch["error"]) == ("FAILURE", "TimeLimitExceeded"), crunch
    assert 0.95 <= crunch["ran for (s)"] < 2.0 and not crunch["process still in the pool"], crunch
    assert late["state"] == "SUCCESS" and late["ran for (s)"] >= 1.95, late


@says("07_duplicates")
def only_prefork_stops_the_nap(shown):
    """"Only prefork stopped it, after 0.5 s (its log says so ...). The threads and solo pools ran it to the end and
    reported `SUCCESS`, and neither logged a word about it" (the bars are the table's)"""
    table = {r["pool"]: r for r in rows(shown, "limits by pool")}
    prefork = table["prefork"]
    assert (prefork["state"], prefork["error"]) == ("FAILURE", "SoftTimeLimitExceeded"), prefork
    assert 0.45 <= prefork["ran for (s)"] < 1.0 and prefork["log mentions a time limit"], prefork
    for pool in ("threads", "solo"):
        row = table[pool]
        assert row["state"] == "SUCCESS" and row["ran for (s)"] >= 1.45 and not row["log mentions a time limit"], row
    bars = shown[NAPS_07]["bars"]["ran for (red: stopped, green: SUCCESS)"]
    assert [h for _, h in bars] == [table[p]["ran for (s)"] for p in ("prefork", "threads", "solo")]


@says("07_duplicates")
def the_timeline_shows_where_each_stopped(shown):
    """"the `hang` bar ends where `revoke(terminate=True)` stopped it; `export` and `crunch` end in failure after about
    1 s, and nothing runs on `crunch`'s lane after it (the process is gone); the threads and solo naps run their full
    1.5 s" """
    bars = shown[TIMELINE_07]["bars"]
    by = {}
    for bar in bars:
        by.setdefault(bar["label"], []).append(bar)
    hang, = by["hang"]
    assert hang["outcome"] == "REVOKED" and 1.0 <= hang["x1"] - hang["x0"] < 5, hang
    assert [b["lane"] for b in bars if b["lane"].split()[0] not in ("prefork", "threads", "solo")] == [], "other apps"
    for name in ("export", "crunch"):
        bar, = by[name]
        assert bar["outcome"] == "FAILURE" and 0.95 <= bar["x1"] - bar["x0"] < 2.0, bar
    crunch = by["crunch"][0]
    assert not [b for b in bars if b["lane"] == crunch["lane"] and b["x0"] > crunch["x1"]], "a run on a dead process"
    # first runs: a loaded CI once showed a nap delivered again (the short visibility_timeout of the duplicates
    # sections restores what sits in the namespace's `unacked`); the sentence is about how long each nap ran
    naps = sorted((b for b in by["nap"] if b["kind"] == "first"), key=lambda b: b["x1"] - b["x0"])
    assert len(naps) == 3 and all(b["x1"] - b["x0"] >= 1.45 for b in naps[1:]), naps


# -- notebooks/facilitator.ipynb (not a chapter: the facilitator's team table) ------------------------------
@says("facilitator")
def facilitator_rows_are_learners(shown):
    """One row per learner on the shared broker [...] exercises passed out of the course's total."""
    rows = shown["team"]["rows"]
    assert len({r["learner"] for r in rows}) == len(rows), "one row per learner"
    for r in rows:
        done, total = map(int, r["done"].split("/"))
        assert 0 <= done <= total, r


@says("facilitator")
def facilitator_stuck_means_not_passed(shown):
    """Rows in red are stuck: their current exercise was first tried more than `STUCK_MINUTES` ago and is neither
    passed nor given."""
    assert all(r["exercise"] != "-" for r in shown["team"]["rows"] if r["stuck"]), "stuck needs an exercise"


# -- 06 lost tasks ------------------------------------------------------------------------------------------
EARLY_06, LATE_06 = "early ack (default)", "acks_late"
REJECT_06, RETRY_06 = "acks_late + reject_on_worker_lost", "retry_on_worker_lost (5.7)"
VT_06 = "acks_late, visibility_timeout 3 s"


def _fate(shown, figure: str, label: str) -> dict:
    return next(r for r in shown[figure]["rows"] if r["label"] == label)


def _killed_in_first_run(row: dict) -> None:
    first = row["runs"][0]
    assert first["x0"] <= row["kill"] <= first["x1"] + 0.05, f"{row['label']}: kill {row['kill']} outside {first}"


@says("06_lost_tasks")
def a_child_kill_fails_the_task_even_with_acks_late(shown):
    """"Early ack: one run, FAILURE with WorkerLostError ... never charged. acks_late alone: also FAILURE, also never
    charged. ... reject_on_worker_lost ... runs again (hatched): SUCCESS, charged once ... retry_on_worker_lost: state
    RETRY, a new attempt" """
    table = {r["settings"]: r for r in rows(shown, "child kills table")}
    for label in (EARLY_06, LATE_06):
        row = table[label]
        assert (row["runs"], row["ended as"], row["error"], row["charged (ledger)"]) == (1, "FAILURE",
                                                                                          "WorkerLostError", 0), row
        fate = _fate(shown, "child kills", label)
        assert fate["state"] == "FAILURE" and [r["outcome"] for r in fate["runs"]] == ["FAILURE"], fate
        _killed_in_first_run(fate)
    for label, first_outcome, again in ((REJECT_06, "FAILURE", "redelivery"), (RETRY_06, "RETRY", "retry")):
        row = table[label]
        assert (row["runs"], row["ended as"], row["charged (ledger)"]) == (2, "SUCCESS", 1), row
        fate = _fate(shown, "child kills", label)
        runs = fate["runs"]
        assert runs[-1]["outcome"] == "SUCCESS" and runs[-1]["kind"] == again, fate
        assert runs[0]["outcome"] in (first_outcome, "LOST", "RUNNING"), fate  # a requeued run sends no end event
        _killed_in_first_run(fate)
    retry = _fate(shown, "child kills", RETRY_06)["runs"]
    assert retry[1]["x0"] - retry[0]["x1"] >= 0.9, f"the retry came sooner than default_retry_delay 1 s: {retry}"


@says("06_lost_tasks")
def a_whole_worker_kill_loses_early_ack_and_restores_acks_late_after_the_timeout(shown):
    """"Early ack: lost ... PENDING forever" and "acks_late + a short visibility_timeout: restored ... once it was
    older than 3 s ... it ran again from the start (hatched): SUCCESS, charged once" """
    table = {r["settings"]: r for r in rows(shown, "whole kills table")}
    assert (table[EARLY_06]["runs"], table[EARLY_06]["ended as"], table[EARLY_06]["charged (ledger)"]) == (
        1, "PENDING", 0), table
    assert (table[VT_06]["runs"], table[VT_06]["ended as"], table[VT_06]["charged (ledger)"]) == (
        2, "SUCCESS", 1), table
    fate = _fate(shown, "whole kills", VT_06)
    _killed_in_first_run(fate)
    again = fate["runs"][1]
    assert again["kind"] == "redelivery" and again["outcome"] == "SUCCESS", fate
    # Its age counts from its delivery, which came before its first start: so the second start may come up to that
    # head start sooner than 3 s after the first (CI: 2.95-3.0 s, reported as 3.0 s). 0.2 s allows for it.
    assert again["x0"] - fate["runs"][0]["x0"] >= 2.8, f"ran again {again['x0'] - fate['runs'][0]['x0']:.2f} s " \
        "after its first start: before it was 3 s old"
    early = _fate(shown, "whole kills", EARLY_06)
    assert len(early["runs"]) == 1 and early["state"] == "PENDING", early


@says("06_lost_tasks")
def a_warm_shutdown_returns_the_prefetched_payments(shown):
    """"the five payments leaving the queue for the worker (unacked rises: prefetched), then, when the shutdown came,
    the ones the worker had not started going back to the queue ... Nothing is lost." """
    row, = rows(shown, "warm shutdown table")
    held, back, charged = (row["held unacknowledged before the shutdown"], row["back in the queue after it"],
                           row["charged"])
    assert held >= 2 and back >= 1 and back + charged == 5, row
    lines = shown["warm shutdown"]["lines"]
    waiting, unacked = lines["l06.warm: waiting"], lines["unacked (held by workers)"]
    assert max(y for _, y in unacked) >= 2, unacked
    peak = next(x for x, y in unacked if y == max(v for _, v in unacked))
    assert value_at(waiting, peak) == 0 and waiting[-1][1] >= 1, (waiting, unacked)


@says("06_lost_tasks")
def defaults_lose_payments_and_the_right_settings_lose_at_most_one_in_transit(shown):
    """"With the defaults the line stops short of 200 ... With task_acks_late=True, task_reject_on_worker_lost=True
    and a short visibility_timeout, no kill lost a payment that a setting can save ... On most runs all 200 are
    charged. On some, one payment is missing all the same, and the table above lists it as 'never began, in no
    queue, not in unacked'" """
    tally = {r["settings"]: r for r in rows(shown, "kill lab tally")}
    assert tally["defaults"]["lost"] >= 1 and tally["defaults"]["charged"] == 200 - tally["defaults"]["lost"], tally
    right = tally["right settings"]
    assert right["lost"] <= 1 and right["charged"] == 200 - right["lost"], tally
    where = [r for r in rows(shown, "where the lost went") if r["settings"] == "right settings"]
    assert sum(r["count"] for r in where) == right["lost"], where
    assert all(r["what became of it"] == TRANSIT_06 for r in where), where
    batches = shown["kill lab"]["batches"]
    assert batches["defaults"]["final"] < 200 and batches["right settings"]["final"] == right["charged"], batches
    assert len(batches["right settings"]["kills"]) == 3, batches
    assert len(batches["defaults"]["kills"]) in (2, 3), batches  # kill 3's payment may be one kill 2 lost


TRANSIT_06 = "never began, in no queue, not in unacked: taken off the queue as its worker died"


@says("06_lost_tasks")
def each_kill_lost_its_own_kind(shown):
    """"Each kill lost its own kind: the child killed before its charge: FAILURE ... the whole worker: the payments it
    had prefetched ... wait in unacked ... A payment running at that moment was acknowledged and is gone" """
    table = [r for r in rows(shown, "where the lost went") if r["settings"] == "defaults"]
    lost = {r["settings"]: r for r in rows(shown, "kill lab tally")}["defaults"]["lost"]
    assert sum(r["count"] for r in table) == lost, table
    kinds = {r["what became of it"] for r in table}
    assert any(k.startswith("FAILURE") for k in kinds), kinds
    assert any(k.startswith("prefetched") for k in kinds), kinds
    assert kinds <= {"FAILURE: WorkerLostError (its child was killed)",
                     "prefetched, held unacknowledged: back after visibility_timeout (1 h)",
                     "started, acknowledged, killed with its worker: gone", TRANSIT_06}, kinds


@says("06_lost_tasks")
def every_duplicate_ran_again_after_a_kill(shown):
    """"Some were charged twice ... Each of them was killed after its charge and before its acknowledgement ... Its
    message came back and it ran again from the start" """
    table = rows(shown, "kill lab duplicates")
    twice = {r["settings"]: r for r in rows(shown, "kill lab tally")}["right settings"]["charged twice"]
    assert len(table) == twice >= 1, (table, twice)
    for row in table:
        # a payment may also have been killed once before its charge (CI saw 3 starts and 2 charges): a start more
        assert row["starts (ledger)"] >= row["charges (ledger)"] >= 2, row
        assert row["redelivered runs"] >= 1, row


@says("06_lost_tasks")
def inspect_sees_what_desk_holds_and_none_when_nobody_answers(shown):
    """"ping(): who is alive. active() ... the long nap. reserved() ... the three behind it ... scheduled() ...
    celery inspect exits 69 ... when no worker answers, 0 otherwise" """
    answers = {r["method"]: r["answer of desk"] for r in rows(shown, "inspect answers")}
    assert answers["inspect().ping()"] == "{'ok': 'pong'}", answers
    assert answers["inspect().active()"].startswith("1 task(s)"), answers
    assert answers["inspect().reserved()"].startswith("3 task(s)"), answers
    assert answers["inspect().scheduled()"].startswith("1 task(s)"), answers
    assert "charge" in answers["inspect().registered()"] and "nap" in answers["inspect().registered()"], answers
    assert [r["exit code"] for r in rows(shown, "celery inspect exit codes")] == [69, 0]


@says("06_lost_tasks")
def the_procedure_places_every_planted_task(shown):
    """"the long nap active on desk, the first two naps reserved behind it, the revoked one REVOKED, the countdown
    scheduled, the one sent to l06.unread waiting in its queue, the payment restored in section 2 done, and the
    payment lost under early ack nowhere" """
    where = {r["task"]: r["where"] for r in rows(shown, "where is my task")}
    assert where["busy"] == "active on desk", where
    assert where["behind-0"] == where["behind-1"] == "reserved on desk", where
    assert where["behind-2"] == "done: REVOKED", where
    assert where["later (countdown 60)"] == "scheduled on desk", where
    assert where["unread queue"] == "waiting in queue l06.unread", where
    assert where["section 2, acks_late"] == "done: SUCCESS", where
    assert where["section 2, early ack"].startswith("nowhere"), where


# -- 05 logging -----------------------------------------------------------------------------------------------
CELERY_INFO_05, CELERY_WARNING_05 = "stderr (celery, INFO)", "stderr (celery, WARNING)"
OWN_SETUP_05 = {
    "defaults": [CELERY_INFO_05, CELERY_INFO_05, CELERY_WARNING_05],
    "-f worker-f.log": ["file (celery, INFO)", "file (celery, INFO)", "file (celery, WARNING)"],
    "worker_redirect_stdouts_level='INFO'": [CELERY_INFO_05, CELERY_INFO_05, CELERY_INFO_05],
    "worker_redirect_stdouts=False": [CELERY_INFO_05, CELERY_INFO_05, "stdout (raw)"],
}
WAYS_05 = {
    "setup_logging receiver": ["stdout (json)", "stdout (json)", "stdout (raw)"],
    "after_setup_logger + after_setup_task_logger": ["stdout (json) + stderr (celery, INFO)",
                                                     "stdout (json) + stderr (celery, INFO)",
                                                     "stdout (json) + stderr (celery, WARNING)"],
    "worker_hijack_root_logger=False": [CELERY_INFO_05, "stdout (json)", "stdout (json)"],
}
KINDS_05 = ["task logger", "plain logger", "print"]


def _by_setup(table: list[dict]) -> dict[str, list[str]]:
    return {r["set-up"]: [r[k] for k in KINDS_05] for r in table}


@says("05_logging")
def default_lines_all_go_to_stderr_in_celerys_format(shown):
    """"Every line the task wrote went to stderr, in Celery's format; stdout got only the start-up banner, no log
    record at all ... the print() became a record ... WARNING ... Only that line carries the task's name and id
    ... The process is ForkPoolWorker-1 or -2" """
    table = rows(shown, "default lines")
    assert len(table) == 12, f"four checkouts, three lines each: {len(table)}"
    assert {(r["stream"], r["format"]) for r in table} == {("stderr", "celery")}, table
    for r in table:
        assert r["process"] in ("ForkPoolWorker-1", "ForkPoolWorker-2"), r
        carries = r["task_id"] is not None and r["task_name"].endswith(".checkout")
        assert carries == r["message"].startswith("charging order"), r
        assert (r["level"] == "WARNING") == r["message"].startswith("receipt for"), r
    streams = {r["defaults"]: r for r in rows(shown, "default streams")}
    assert streams["stdout"]["lines"] > 0 and streams["stdout"]["log records"] == 0, streams
    assert streams["stderr"]["log records"] >= 12, streams


@says("05_logging")
def logfile_and_print_settings(shown):
    """"-f FILE moves Celery's handler from stderr to the file: all three lines ... stderr holds no log record at
    all ... stdout keeps only the banner"; "level INFO: the print is still a record on stderr, now at INFO";
    "worker_redirect_stdouts=False: the print goes raw to stdout" """
    assert _by_setup(rows(shown, "Celery's own set-up")) == OWN_SETUP_05
    streams = {r["with -f"]: r for r in rows(shown, "with -f")}
    assert streams["stderr"]["log records"] == 0 and streams["stdout"]["log records"] == 0, streams
    assert streams["file"]["log records"] >= 6, streams


@says("05_logging")
def three_ways_side_by_side(shown):
    """"setup_logging receiver ... JSON on stdout, the print raw on stdout, and stderr got none of them. The
    after_setup_logger and after_setup_task_logger receivers of the same module wrote nothing"; "after_setup_* ...
    each line went to both streams"; "hijack off ... the task logger line did not" (table and grid)"""
    assert _by_setup(rows(shown, "three ways")) == WAYS_05
    assert [r["lines its receivers wrote"] for r in rows(shown, "after_setup signals")] == [0]
    cells = shown["stream map"]["cells"]
    assert {setup: [cells[setup][k] for k in KINDS_05] for setup in cells} == {**OWN_SETUP_05, **WAYS_05}


@says("05_logging")
def json_lines_join_the_recorded_tasks(shown):
    """"Each of the three tasks has three JSON lines ..., every id matched a task the recorder saw, with the same
    task name, and the pid in the log is the pool process the recorder's events say ran the task" """
    table = rows(shown, "json joined to the recorder")
    assert len(table) == 3, table
    for r in table:
        assert r["json_lines"] == 3, r
        assert r["logged_name"] == r["recorded_name"] and r["logged_name"].endswith("logging_own.checkout"), r
        assert r["logged_pid"] == r["recorded_pid"] and r["state"] == "SUCCESS", r
        assert r["loggers"].split(", ")[0] == "celery.app.trace" and "shop.payments" in r["loggers"], r


@says("05_logging")
def three_failures(shown):
    """"doubled: each gateway accepted line twice on stderr, once raw ... once in Celery's format. queued: none of
    them reached any stream ...; the line the main process logged ... went through. queued-fixed: one line per
    checkout, JSON on stdout, with the task's id. basicConfig: a JSON line on stdout in plain Python, but in the
    worker Celery's format on stderr" """
    table = {r["set-up"]: r for r in rows(shown, "failures")}
    def got(name):
        r = table[name]
        return r["gateway lines"], r["with a task id"], r["where"], r["main process's line"]
    assert got("doubled") == (4, 0, "stderr (raw) + stderr (celery, INFO)", "—")
    assert got("queued") == (0, 0, "nowhere", 1)
    assert got("queued-fixed") == (2, 2, "stdout (json)", 1)
    assert got("basicConfig") == (2, 0, CELERY_INFO_05, "—")
    assert got("basicConfig, in plain python") == (1, 0, "stdout (json)", "—")


# -- 08 memory ----------------------------------------------------------------------------------------------
LEAK_08 = "leak"
PANELS_08 = ("no limit", "--max-tasks-per-child 8", "--max-memory-per-child 100000 (KiB), then peak(80)")


def _children_08(shown, panel: str) -> list[dict]:
    return shown[LEAK_08]["children"][panel]


def _renders_08(shown, worker: str) -> list[int]:
    """Renders per child of `worker`, in the order the table lists them (each child's own count)."""
    return [r["renders"] for r in rows(shown, "children") if r["worker"] == worker and r["renders"]]


@says("08_memory")
def without_a_limit_one_child_grows_and_never_ends(shown):
    """"With no limit one child ran all 16 renders and kept growing, 4 MiB a task: its line climbs step by step
    while it renders, stays at the top once the renders are done, and never ends (no ✕)." """
    lives = _children_08(shown, PANELS_08[0])
    assert len(lives) == 1 and not lives[0]["ended"], lives
    assert lives[0]["peak_mb"] - lives[0]["first_mb"] >= 16 * 4 * 0.8, lives
    assert lives[0]["last_mb"] >= lives[0]["peak_mb"] - 2, lives  # it stays at the top: nothing frees the cache
    assert _renders_08(shown, "plain") == [16]


@says("08_memory")
def max_tasks_replaces_the_child_after_eight(shown):
    """"`--max-tasks-per-child 8` ... replaced the child after 8 tasks: two children, each ended with a ✕, each
    smaller than the unlimited one." """
    assert _renders_08(shown, "tasks") == [8, 8]
    lives = _children_08(shown, PANELS_08[1])
    assert len(lives) >= 2 and lives[0]["ended"] and lives[1]["ended"], lives
    biggest = _children_08(shown, PANELS_08[0])[0]["peak_mb"]
    assert all(life["peak_mb"] < biggest - 10 for life in lives[:2]), (lives, biggest)


@says("08_memory")
def a_replacement_starts_after_its_predecessor_ends(shown):
    """"Replacing a child is not free: the pool must notice the exit and fork a new one ... (the gaps between lines
    in the lower panels)": on a one-process worker each child starts only once the one before it has ended."""
    for panel in PANELS_08[1:]:
        lives = _children_08(shown, panel)
        for before, after in zip(lives, lives[1:]):
            assert after["start"] > before["end"], (panel, before, after)


@says("08_memory")
def the_memory_limit_is_checked_after_the_task(shown):
    """"a child is replaced only after the task that crossed it, and the 80 MiB `peak` task ran to SUCCESS first, on
    a child that went far above the limit" (100 000 KiB is about 98 MiB)."""
    limit_mb = 100_000 / 1024
    lives = _children_08(shown, PANELS_08[2])
    assert len(lives) >= 2 and lives[0]["ended"], lives
    assert lives[0]["peak_mb"] >= limit_mb - 2, f"the first child ended at {lives[0]['peak_mb']} MiB"
    big = [r for r in rows(shown, "children") if r.get("peak(80)") == "SUCCESS"]
    assert len(big) == 1 and big[0]["peak RSS (KiB)"] > 100_000 + 20 * 1024, big
    ran_it = [life for life in lives if life["pid"] == big[0]["child"]]
    assert ran_it and ran_it[0]["ended"] and ran_it[0]["peak_mb"] > limit_mb + 20, (ran_it, lives)
    assert sum(_renders_08(shown, "memory")) == 16


@says("08_memory")
def a_fresh_child_holds_about_43_to_45_mib(shown):
    """"A fresh child already holds about 43-45 MiB here" (a limit in MB would sit below it)."""
    # each panel's first child, sampled before its first render: a replacement's first sample (50 ms apart, or
    # more under load) may already hold a render or two
    starts = [_children_08(shown, panel)[0]["first_mb"] for panel in PANELS_08]
    assert all(40 <= mb <= 50 for mb in starts), starts


@says("08_memory")
def billiard_says_why_with_mp_log(shown):
    """"Billiard logs `child process exiting after exceeding memory limit` as a WARNING ... as the memory worker's
    has" (MP_LOG=1): once for the child that crossed 100000 KiB with the leak, once after peak(80)."""
    lines = [r["the memory worker's log (MP_LOG=1)"] for r in rows(shown, "mp_log")]
    assert len(lines) >= 2, lines
    assert all("child process exiting after exceeding memory limit (" in x and "KiB / 100000KiB)" in x
               for x in lines), lines


@says("08_memory")
def an_oom_kill_fails_early_ack_and_requeues_with_reject(shown):
    """"The default worker reports `WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)`, state FAILURE,
    and never runs the batch again ... the runs show a first run that never ended and a redelivery on a new child,
    and the ledger holds `late-1` once" """
    early, late = rows(shown, "oom")
    assert early["state"] == "FAILURE" and "WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL)" in \
        early["result"], early
    assert early["runs (pid: outcome)"].endswith("FAILURE") and "," not in early["runs (pid: outcome)"], early
    assert early["ledger entries"] == 0 and early["killed by"] in ("the kernel", "the watchdog"), early
    runs = late["runs (pid: outcome)"].split(", ")
    assert late["state"] == "SUCCESS" and len(runs) == 2, late
    assert runs[0].endswith("LOST") and runs[1].endswith("SUCCESS") and runs[0].split(":")[0] != \
        runs[1].split(":")[0], runs
    assert late["ledger entries"] == 1 and late["killed by"] in ("the kernel", "the watchdog"), late


@says("08_memory")
def the_killed_children_end_on_the_plot(shown):
    """The second plot: each capped child ends with a ✕ and a new child starts on each worker."""
    for panel, lives in shown["oom kill"]["children"].items():
        assert len(lives) >= 2 and lives[0]["ended"], (panel, lives)


@says("08_memory")
def the_limit_lines_are_drawn_and_labelled(shown):
    """"the dashed line in the last panel is its worker's memory limit", and on the second plot each capped child's
    cap, "its start + 40 MiB": a killed child never went far past its line, the memory worker's first child ended
    at it."""
    limits = shown[LEAK_08]["limits"]
    assert list(limits) == [PANELS_08[2]] and abs(limits[PANELS_08[2]]["mb"] - 100_000 / 1024) < 0.1, limits
    assert "100 000 KiB" in limits[PANELS_08[2]]["label"], limits
    first = _children_08(shown, PANELS_08[2])[0]
    assert first["peak_mb"] >= limits[PANELS_08[2]]["mb"] - 3, first
    caps = shown["oom kill"]["limits"]
    for panel, lives in shown["oom kill"]["children"].items():
        cap = caps[panel]
        assert "+ 40 MiB" in cap["label"] and 75 <= cap["mb"] <= 100, (panel, cap)
        assert lives[0]["peak_mb"] <= cap["mb"] + 5, (panel, lives[0], cap)  # 4 MiB a piece: one piece past, at most


@says("08_memory")
def the_redelivered_batch_ran_past_the_cap_on_an_uncapped_child(shown):
    """"The cap stayed with the killed child (its dashed line); the new child has no cap ... so the batch ran to its
    end there": on the late worker's panel, the next child went above the first child's cap line."""
    panel = "late: task_acks_late + task_reject_on_worker_lost"
    lives = shown["oom kill"]["children"][panel]
    assert max(life["peak_mb"] for life in lives[1:]) > shown["oom kill"]["limits"][panel]["mb"], lives


@says("08_memory")
def stored_results_climb_then_expire_by_themselves(shown):
    """"The stored results climb to 40 and then vanish about 8 s after they were written, with no process deleting
    them; `ignore_result=True` never wrote one." (8 s, not 3, then 5: on a machine at half its usual speed, under a
    full test run, the first keys expired before the last of the 40 were written, twice.)"""
    lines = shown["results"]["lines"]
    stored, quiet = lines["click (result stored)"], lines["quiet_click (ignore_result=True)"]
    assert {y for _, y in quiet} == {0}, quiet
    full = next((x for x, y in stored if y == 40), None)
    assert full is not None, f"never 40 at once: {stored}"
    gone = next((x for x, y in stored if x > full and y == 0), None)
    assert gone is not None and 6.5 <= gone <= 12.0 and stored[-1][1] == 0, stored


@says("08_memory")
def purge_empties_the_waiting_and_leaves_the_rest(shown):
    """"`celery purge` deleted the messages **waiting** in the queue ... It left: the messages the worker already
    held ... The reserved clicks ran after the purge anyway ... every result key" """
    before, after = rows(shown, "purge")
    held = "held by the worker (unacked: reserved + countdown)"
    assert before["waiting in the queue"] > 0 and after["waiting in the queue"] == 0, (before, after)
    assert before[held] == after[held] >= 2, (before, after)
    assert before["result key of an earlier task"] == after["result key of an earlier task"] == 1
    assert after["clicks that ran after the purge"] == before[held] - 1, (before, after)


@says("08_memory")
def a_result_is_its_whole_return_value_kept_a_day(shown):
    """"How big is a result? The whole return value, serialized ... The `early` worker keeps results for the
    default day" and "stores it whole, in Redis, for `result_expires` (a day by default)" """
    small, big = rows(shown, "result sizes")
    assert big["bytes in Redis"] > 100 * small["bytes in Redis"] and big["bytes in Redis"] > 300_000, (small, big)
    assert 86_000 <= small["TTL (s)"] <= 86_400 and 86_000 <= big["TTL (s)"] <= 86_400, (small, big)


# -- 09 pools -----------------------------------------------------------------------------------------------------
IO_09, CPU_09 = "20 x fetch(0.2 s): waiting", "6 x crunch(3): computing"


def _burst_09(shown, burst: str) -> dict:
    return shown["pools"]["bursts"][burst]


def _row_09(shown, table: str, worker: str) -> dict:
    return next(r for r in rows(shown, table) if r["worker"] == worker)


@says("09_pools")
def threads_and_gevent_finish_the_waits_at_least_twice_as_fast(shown):
    """"threads and gevent ... ran many side by side (up to 20), so they were done sooner than prefork -c 2";
    prefork "ran 2 at a time"; solo "one at a time ... the slowest of the four". Not "all 20 at
    once": on a loaded machine sending 20 messages took longer than a 0.2 s fetch (10 and 13 at once seen)."""
    io = _burst_09(shown, IO_09)
    for pool in ("threads", "gevent"):
        assert 3 <= io[pool]["at_once"] <= 20, io[pool]  # more than prefork's 2 (CI at half speed: 5)
        assert io[pool]["wall_s"] < io["prefork"]["wall_s"], (pool, io)  # CI under load: 3.79 vs 4.46 s
    assert io["prefork"]["at_once"] == 2 and io["prefork"]["processes"] == 2, io["prefork"]
    slowest = max(io.values(), key=lambda run: run["wall_s"])
    assert io["solo"]["at_once"] == 1 and slowest is io["solo"], io  # CI under load: 6.03 s against prefork's 4.46


@says("09_pools")
def only_prefork_crunches_in_two_processes_at_once(shown):
    """"prefork ran 2 crunches at the same moment, in two processes: the only pool that can use two cores"."""
    cpu = _burst_09(shown, CPU_09)
    assert cpu["prefork"]["processes"] == 2 and cpu["prefork"]["pairs_in_two_processes"] >= 1, cpu["prefork"]
    assert all(cpu[p]["pairs_in_two_processes"] == 0 for p in ("threads", "gevent", "solo")), cpu


@says("09_pools")
def threads_never_get_more_than_one_core(shown):
    """"threads started several crunches at once, yet its threads together got at most one core (CPU cores used
    about 1 or less) ... six crunches took at least their whole CPU time"."""
    threads = _burst_09(shown, CPU_09)["threads"]
    assert threads["at_once"] >= 2, threads
    assert threads["cores_used"] <= 1.15, threads
    assert threads["wall_s"] >= 0.85 * threads["cpu_s"], threads
    assert _row_09(shown, "pool numbers", "threads")["CPU cores used"] <= 1.15


@says("09_pools")
def gevent_and_solo_crunch_one_at_a_time(shown):
    """"gevent ran the crunches one after another, each in a greenlet"; "solo ran them one after another too".
    (Not "each in a greenlet of its own": a lane is a greenlet's id, which a later greenlet may reuse; CI saw 5
    lanes for 6 crunches.)"""
    cpu = _burst_09(shown, CPU_09)
    assert cpu["gevent"]["at_once"] == 1 and 1 <= cpu["gevent"]["lanes"] <= 6, cpu["gevent"]
    assert cpu["solo"]["at_once"] == 1 and cpu["solo"]["lanes"] == 1, cpu["solo"]


@says("09_pools")
def prefork_pays_a_process_per_child(shown):
    """"prefork pays a whole Python process per unit of concurrency (here 3 processes: the main one and 2
    children), threads and gevent one process for 20"."""
    prefork = _row_09(shown, "pool numbers", "prefork")
    assert prefork["processes"] == 3, prefork
    for pool in ("threads", "gevent"):
        row = _row_09(shown, "pool numbers", pool)
        assert row["processes"] == 1, row
        assert prefork["RSS, all its processes (MiB)"] >= 1.8 * row["RSS, all its processes (MiB)"], (prefork, row)
    drawn = shown["pool memory"]["workers"]
    assert drawn["prefork"]["processes"] == 3 and drawn["threads"]["processes"] == 1, drawn


@says("09_pools")
def only_prefork_and_gevent_stop_the_stuck_task(shown):
    """"prefork enforced the soft limit (SoftTimeLimitExceeded ... at 0.5 s)"; "gevent ... TimeLimitExceeded at 1 s";
    "threads and solo let it run to its end: 2.5 s and SUCCESS"."""
    prefork, gevent = _row_09(shown, "limits", "prefork"), _row_09(shown, "limits", "gevent")
    assert prefork["state"] == "FAILURE" and prefork["result"] == "SoftTimeLimitExceeded", prefork
    assert gevent["state"] == "FAILURE" and gevent["result"] == "TimeLimitExceeded", gevent
    assert prefork["ended after (s)"] < 2.5 and gevent["ended after (s)"] < 2.5, (prefork, gevent)
    for pool in ("threads", "solo"):
        row = _row_09(shown, "limits", pool)
        assert row["state"] == "SUCCESS" and row["ended after (s)"] >= 2.4, row


@says("09_pools")
def a_busy_solo_worker_answers_no_ping(shown):
    """"while it works, `celery inspect` gets no reply from it" (ping returns None), and it answers once the task
    ends."""
    during, after = rows(shown, "solo ping")
    assert during["reply"] == "None", during
    assert "pong" in after["reply"], after


@says("09_pools")
def auto_counts_no_more_than_the_default(shown):
    """The default -c counts the host's CPUs; -c auto never more than those this process may run on."""
    row = rows(shown, "cpu budget")[0]
    assert row["-c auto for prefork"] <= row["CPUs this process may run on (affinity)"], row
    assert row["CPUs this process may run on (affinity)"] <= row["os.cpu_count() (the default -c)"], row
@says("09_pools")
def only_prefork_goes_above_one_core(shown):
    """"threads, gevent and solo stay at or under one core ... A single 0.1 s sample may read a little over ... over
    four samples in a row, never more than 1.15"; prefork "rises above 1.2 whenever its CPU cores used in the table
    is above 1.3"."""
    drawn = shown["pool cpu"]["workers"]
    for pool in ("threads", "gevent", "solo"):
        assert drawn[pool]["peak_window"] <= 1.15 and drawn[pool]["peak"] <= 1.35, (pool, drawn[pool])
    prefork = _row_09(shown, "pool numbers", "prefork")
    if prefork["CPU cores used"] > 1.3:  # its line: one sample inside the burst reads at least about its mean
        assert drawn["prefork"]["peak"] > 1.2, (prefork, drawn["prefork"])


@says("09_pools")
def the_sampled_cpu_is_what_the_crunches_measured(shown):
    """"the CPU seconds each panel counts and the CPU time the crunches measured in themselves agree within 20 %"."""
    for pool, seen in shown["pool cpu"]["workers"].items():
        assert seen["reported_s"] > 0 and abs(seen["sampled_s"] - seen["reported_s"]) <= 0.2 * seen["reported_s"], \
            (pool, seen)


# -- 11 beat ------------------------------------------------------------------------------------------------
def _rate_11(shown, phase: str, entry: str) -> dict:
    return next(r for r in rows(shown, "rates") if r["phase"] == phase and r["entry"] == entry)


@says("11_beat")
def a_crontab_follows_the_timezone_setting(shown):
    """"The crontab runs at 07:30 UTC by default; with `timezone="Asia/Tokyo"` ... 22:30 UTC the day before ... its
    first run is on Sunday 22:30 UTC"; seconds and timedelta are intervals the time zone does not change."""
    runs = {(r["timezone"], r["entry"]): r["next three runs after Fri 2026-11-27 00:00 UTC"] for r in rows(shown, "schedules")}
    assert runs[("(default: UTC)", "weekdays-0730")] == "Fri 07:30:00, Mon 07:30:00, Tue 07:30:00", runs
    assert runs[("Asia/Tokyo", "weekdays-0730")] == "Sun 22:30:00, Mon 22:30:00, Tue 22:30:00", runs
    for entry in ("every-2s", "every-90s"):
        assert runs[("(default: UTC)", entry)] == runs[("Asia/Tokyo", entry)], runs
    assert {r["becomes"] for r in rows(shown, "schedules") if r["entry"] != "weekdays-0730"} == {"schedule"}


@says("11_beat")
def one_beat_works_once_a_second_two_beats_twice(shown):
    """"Beat A alone sent each entry once a second, and each did its work once a second. With beat B running, every
    message was sent twice ... `tick` did its work twice a second." """
    for entry in ("tick", "sweep"):
        alone = _rate_11(shown, "beat A alone", entry)
        assert alone["sent"] >= 3 and alone["did its work"] == alone["sent"], alone
        assert 0.7 <= alone["work per second"] <= 1.3, alone
    both = _rate_11(shown, "beats A and B", "tick")
    assert both["sent"] >= 6 and both["did its work"] == both["sent"] and 1.6 <= both["work per second"] <= 2.4, both


@says("11_beat")
def the_slot_lock_keeps_sweep_once_a_second(shown):
    """"`sweep` did its work once a second all along: of each pair, the first run to take the slot's lock did the
    work, the other found it taken" (on the figure: on each second both beats sent, one filled dot)."""
    both = _rate_11(shown, "beats A and B", "sweep")
    assert both["sent"] >= 6 and abs(both["did its work"] - both["sent"] / 2) <= 1, both
    assert 0.7 <= both["work per second"] <= 1.3, both
    lines = shown["two beats"]["lines"]
    worked = [x for label, pts in lines.items() if label.startswith("sweep") and "did its work" in label
              for x, _ in pts]
    skipped = [x for label, pts in lines.items() if label.startswith("sweep") and "skipped" in label
               for x, _ in pts]
    assert skipped, lines.keys()
    # each skipped copy has its pair's working copy beside it; by the times the runs began, not by rounding them to
    # a second (CI saw a pair run at about 17.4 and 17.6 s, which rounding puts in two seconds)
    lone = [s for s in skipped if not any(abs(w - s) <= 0.9 for w in worked)]
    assert len(lone) <= 1, (worked, skipped)


@says("11_beat")
def expires_drops_the_backlog_and_stale_runs_it_late(shown):
    """"`stale` ran every message it ever sent, the old ones seconds late ... The worker took the old messages, saw
    they had expired, and dropped them ... the ones it received in time ran." """
    by = {r["entry"]: r for r in rows(shown, "backlog")}
    fresh, stale = by["fresh"], by["stale"]
    assert stale["dropped as expired"] == 0 and stale["ran"] == stale["sent"], stale
    assert stale["sent before the late worker started"] >= 2 and stale["longest wait before a run (s)"] >= 2, stale
    assert fresh["dropped as expired"] >= 2 and fresh["dropped as expired"] + fresh["ran"] == fresh["sent"], fresh
    assert fresh["dropped as expired"] <= fresh["sent"] - fresh["ran"], fresh
    assert fresh["ran"] >= 3 and fresh["longest wait before a run (s)"] <= 1.2, fresh
    lines = shown["expires"]["lines"]
    assert "fresh: dropped as expired" in lines and "stale: dropped as expired" not in lines, lines.keys()
    # the old ones were dropped, the later ones ran: every drop was sent before the first fresh message that ran
    assert max(x for x, _ in lines["fresh: dropped as expired"]) < min(x for x, _ in lines["fresh: ran"]), lines


@says("11_beat")
def a_restarted_beat_sends_a_missed_run_once(shown):
    """"It sent the entry once, right at its start, and then every second again: the runs it missed were not
    replayed ... A fresh beat, with no file, sends an entry one interval after it starts (beat D's first dot)." """
    (row,) = rows(shown, "restart")
    assert row["runs missed"] >= 2 and row["beat D down (s)"] >= 2.5, row
    assert row["first send after its restart (s)"] <= 0.5 and row["sends in its first 0.9 s"] == 1, row
    assert 0.9 <= row["then one every (s)"] <= 1.1, row
    assert 0.8 <= row["fresh beat D: first send after its start (s)"] <= 1.3, row
    after = shown["downtime"]["lines"]["after the restart"]
    assert len(after) >= 2, after
# -- 12 canvas ----------------------------------------------------------------------------------------------
def _bars_12(shown, figure: str, label: str) -> list[dict]:
    return [b for b in shown[figure]["bars"] if b["label"] == label]


@says("12_canvas")
def a_chain_hands_each_result_on(shown):
    """"`mul.s(10)` received `(5, 10)` ... `add.si(1, 1)` received `(1, 1)` and dropped the 50 ... the last `mul.s(5)`
    got its 2. `flow.get()` returns the **last** step's result, and `flow.parent` ... lead back" """
    steps = rows(shown, "chain steps")
    assert [s["received"] for s in steps] == ["(2, 3)", "(5, 10)", "(1, 1)", "(2, 5)"], steps
    assert [s["returned"] for s in steps] == [5, 50, 2, 10], steps
    assert steps[0]["parent"] == "none" and all(s["parent"] != "none" for s in steps[1:]), steps
    assert rows(shown, "primitives")[0][".get() returned"] == "10"


@says("12_canvas")
def the_chain_ran_one_step_after_another(shown):
    """"The chain ran its steps **one after another** ...: a step is sent when the one before has returned" (its bars
    are labelled with their results 5, 50, 2, 10; each step sleeps 0.3 s before it returns)."""
    bars = [_bars_12(shown, "tour", v) for v in ("5", "50", "2", "10")]
    assert all(len(b) == 1 for b in bars), bars
    for before, after in zip(bars, bars[1:]):
        assert after[0]["x0"] >= before[0]["x0"] + 0.29, (before, after)


@says("12_canvas")
def group_chord_and_chunks_do_what_the_table_says(shown):
    """"Four tasks ran on both processes of the worker"; the chord's callback "got `[1, 4, 9, 16]` and returned 30"
    and "started only once the last header task had returned: at least the 0.3 s each task works after the
    header's last start"; "six additions became two tasks" """
    chain_, group_, header, callback, chunks = rows(shown, "primitives")
    assert group_["result object"] == "GroupResult" and group_[".get() returned"] == "[1, 4, 9, 16]", group_
    assert group_["runs"] == 4 and group_["processes"] == 2, group_
    assert header[".get() returned"] == "[1, 4, 9, 16]" and header["runs"] == 4, header
    assert callback[".get() returned"] == "30" and callback["runs"] == 1, callback
    assert callback["first start (s)"] >= header["last start (s)"] + 0.29, (header, callback)
    assert chunks["runs"] == 2 and chunks[".get() returned"] == "[[0, 2, 4], [6, 8, 10]]", chunks
    assert len(_bars_12(shown, "tour", "3 adds")) == 2


@says("12_canvas")
def get_inside_a_task_is_refused_and_alone_it_works(shown):
    """"inside a task it raises `RuntimeError: Never call result.get() within a task!`" and "With the guard off,
    one waiter alone got its answer" """
    refused, alone = rows(shown, "get inside a task")
    assert refused["state"] == "FAILURE" and refused["result"] == "Never call result.get() within a task!", refused
    assert alone["state"] == "SUCCESS" and alone["result"] == "2", alone


@says("12_canvas")
def two_waiters_deadlock_a_two_process_pool(shown):
    """"The worker **received** both `add` messages ... neither ever started, and the two waiters were still running
    (no end) when the worker was killed." The figure: two bars that run to the end, one per process."""
    stuck = rows(shown, "stuck tasks")
    waiters = [r for r in stuck if r["task"].startswith("waits_inside")]
    adds = [r for r in stuck if r["task"].startswith("add")]
    assert len(waiters) == 2 and all(r["ended"] == "RUNNING" for r in waiters), stuck
    assert len(adds) == 2 and all(r["started (s)"] == "never" for r in adds), stuck
    bars = shown["deadlock"]["bars"]
    assert len(bars) == 2 and {b["outcome"] for b in bars} == {"RUNNING"}, bars
    assert len({b["lane"] for b in bars}) == 2 and all(b["x1"] - b["x0"] >= 1.95 for b in bars), bars


@says("12_canvas")
def a_failing_step_fails_the_rest_of_the_chain(shown):
    """"`mul(?, 3)` never ran (no run, no bar), yet its state is FAILURE with the same `ValueError` ... The first
    step's SUCCESS stays." """
    first, middle, last = rows(shown, "fates")[:3]
    assert (first["state"], first["ran"]) == ("SUCCESS", 1), first
    assert (middle["state"], middle["ran"]) == ("FAILURE", 1), middle
    assert (last["state"], last["ran"]) == ("FAILURE", 0), last
    assert last["stored result"] == middle["stored result"] == "ValueError('bad input: 2')", (middle, last)
    assert not [b for b in shown["failures"]["bars"] if b["name"].endswith(".mul")]


@says("12_canvas")
def a_failing_header_task_keeps_the_callback_from_running(shown):
    """"one header task failed and the two others succeeded; the callback `total` **never ran**. Its state is
    FAILURE with `ChordError: Dependency <id> raised ValueError(...)`" """
    fates = rows(shown, "fates")
    headers, callback = fates[3:6], fates[6]
    assert [h["state"] for h in headers] == ["SUCCESS", "FAILURE", "SUCCESS"] and all(h["ran"] == 1 for h in headers)
    assert callback["state"] == "FAILURE" and callback["ran"] == 0, callback
    assert callback["stored result"].startswith("ChordError(\"Dependency ") and "raised Val" in \
        callback["stored result"], callback
    assert not [b for b in shown["failures"]["bars"] if b["name"].endswith(".total")]


@says("12_canvas")
def errors_surface_and_the_errback_runs_once_in_the_failed_process(shown):
    """"`broken.get()` ... raises the middle step's error"; "`bad.get()` raised the header task's own `ValueError`";
    the errback is "fired once: for the step that failed", "in the process that ran the failed task ... the ledger
    entry carries that pid and no `note_failure` run appears." """
    said = {r["what"]: r["value"] for r in rows(shown, "error callbacks")}
    assert said["chain .get() raised"] == "ValueError('bad input: 2')", said
    assert said["chord .get() raised"] == "ValueError('bad input: 3')", said
    assert said["note_failure calls (ledger entries)"] == 1, said
    assert said["failed task id it recorded"] == said["id of the chain's failed step"], said
    wrote, ran = said["pid that wrote the entry / pid that ran fails"].split(" / ")
    assert wrote == f"[{ran}]", said
    assert said["note_failure runs as a task of its own"] == 0, said


@says("12_canvas")
def chords_without_a_backend_are_refused_in_the_caller(shown):
    """"The chain was sent ... Both chords were refused **in the caller**: `apply_async` raised `NotImplementedError:
    Starting chords requires a result backend to be configured.`" """
    chain_, chord_, upgraded = rows(shown, "no backend")
    assert chain_["in the caller"] == "sent: AsyncResult", chain_
    refusal = "NotImplementedError: Starting chords requires a result backend to be configured."
    assert chord_["in the caller"] == upgraded["in the caller"] == refusal, (chord_, upgraded)


@says("12_canvas")
def the_chord_key_grows_then_empties(shown):
    """"The key gained an entry as each header task ended ... sent the callback (the dashed line: it starts), and
    then deleted the key: the count falls back to 0." """
    lines = shown["chord counter"]["lines"]
    count = lines["ZCARD of the .j key"]
    values = [y for _, y in count]
    top = max(values)
    assert 1 <= top <= 6 and values[-1] == 0, count
    peak = values.index(top)
    assert values[:peak + 1] == sorted(values[:peak + 1]), count  # it only grew, until the drop
    assert all(v == 0 for v in values[peak + 1:]), count
    callback = lines["total (the callback) starts"][0][0]
    first = next(x for x, y in count if y > 0)
    assert callback > first, (first, callback)  # the count was growing before the callback started


@says("12_canvas")
def ignoring_results_in_a_chord(shown):
    """"Header tasks with `ignore_result=True`: no result key for any of them, and the chord still completed, with
    the right sum"; sent with `ignore_result=True`: "`total` ran ..., but its result was never stored; its state
    stays PENDING and the caller's `.get()` waits until its timeout." """
    header, whole = rows(shown, "ignore_result")
    assert header["header result keys"] == 0 and header["total ran"] == 1, header
    assert header["callback state"] == "SUCCESS" and header[".get() gave"] == "12", header
    assert whole["header result keys"] == 0 and whole["total ran"] == 1, whole
    assert whole["callback state"] == "PENDING" and whole[".get() gave"] == "TimeoutError after 2 s", whole


# -- 10 broker trouble --------------------------------------------------------------------------------------
def _said_10(shown, worker: str) -> list[dict]:
    return [r for r in rows(shown, "connection lines") if r["worker"] == worker]


@says("10_broker_trouble")
def idle_retries_two_then_four_seconds_and_comes_back(shown):
    """"`idle` shows Celery's reconnect loop: Connection to broker lost, then Cannot connect ... Trying again in 2.00
    seconds (1/100), then 4 s ... until Connected. It did not need anyone to restart it. (In some runs Connected
    follows Connection to broker lost with no failed try between them ...)" (CI saw that once in seven runs)."""
    said = _said_10(shown, "idle")
    kinds = [r["says"] for r in said]
    assert "connection lost" in kinds and kinds[-1] == "connected", rows(shown, "connection lines")
    waits = [r["next try in s"] for r in said if r["says"] == "reconnect failed"]
    assert waits[:2] == [2.0, 4.0][:len(waits)], waits
    assert all(b - a == 2.0 for a, b in zip(waits, waits[1:])), waits
    lost = next(r["s"] for r in said if r["says"] == "connection lost")
    if waits:  # the broker was down 3 s: a try that failed means the loss was heard early, so no earlier try
        assert said[-1]["s"] - lost >= 2.5, said  # could connect


def _outage_story(shown) -> str:
    """What the workers' logs and the recorder said about the outage: the context a failing fact of lesson 10 needs
    (CI once saw `steady` reconnect with its burst still held, and no gap in the recording)."""
    f = shown["outage timeline"]
    said = "; ".join(f"{r['worker']} {r['s']} s {r['says']}" for r in rows(shown, "connection lines"))
    return f"broker down {f['down_at']:.2f}-{f['back_at']:.2f} s, recorder gaps {f['gaps']}; logs: {said}"


def _steady_died(shown) -> bool:
    """Whether `steady` gave up on the loss (the run most lessons see) rather than reconnecting."""
    return "worker gives up" in [r["says"] for r in _said_10(shown, "steady")]


@says("10_broker_trouble")
def steady_gives_back_what_it_held_then_dies_or_retries(shown):
    """"`steady` held messages ... It logs Restoring N unacknowledged message(s) ... the worker died right there
    ... or ... reconnected as `idle` did." """
    kinds = [r["says"] for r in _said_10(shown, "steady")]
    assert "connection lost" in kinds and "puts back what it held" in kinds, kinds
    after = kinds[kinds.index("puts back what it held") + 1:]
    assert after and after[0] in ("worker gives up", "reconnect failed", "connected"), kinds
    assert after[-1] in ("worker gives up", "connected"), kinds


@says("10_broker_trouble")
def running_jobs_end_prefetched_ones_are_held(shown):
    """"Jobs already running when the broker went away ran to their end ... Prefetched jobs that were not given back
    are `held` (if `steady` died, or survived without restoring them) ... If `steady` survived and its Restoring
    reached Redis ... every job of the burst is in the tally ... Jobs sent after the restart ran on `idle` ... and on
    `steady` if it survived. If `steady` died, the jobs sent to it after the restart wait in the queue"; `late`
    exited with code 1."""
    by = {(r["sent"], r["where"]): r["jobs"].split(", ") for r in rows(shown, "fates")}
    burst = {w: jobs for (sent, w), jobs in by.items() if sent.startswith("burst")}
    story = (by, _outage_story(shown))
    assert sum(map(len, burst.values())) == 12, story
    after = set(w for (sent, w) in by if sent == "to steady, after the restart")
    if _steady_died(shown):
        assert len(burst.get("ran", [])) >= 4 and len(burst.get("held", [])) >= 1, story  # it stopped after 4 ran
        assert set(burst) <= {"ran", "held", "waiting"}, story  # nothing vanished: Redis saved what it had
        assert after == {"waiting"}, story
    else:  # survived: its Restoring reached Redis (all ran), or failed while Redis was down (the rest held; CI)
        assert len(burst.get("ran", [])) >= 4 and set(burst) <= {"ran", "held"}, story
        assert after == {"ran"}, story
    assert len(by[("to idle, after the restart", "ran")]) == 4, story
    (late,) = rows(shown, "late")
    assert late["exit code"] == 1 and "has been disabled" in late["said"], late


@says("10_broker_trouble")
def the_gap_is_the_outage(shown):
    """"The recorder's gap (shaded) starts when the broker went away." """
    f = shown["outage timeline"]
    assert f["gaps"], _outage_story(shown)
    start, end = f["gaps"][0]
    assert abs(start - f["down_at"]) <= 0.6 and end is not None and end >= f["back_at"] - 0.3, _outage_story(shown)
    # "If `steady` died, their grey bars ... carry the time the tally file recorded, inside the gap" (if it survived,
    # it sent their end events once connected again: no grey bars, CI)
    grey = [b for b in f["bars"] if b["outcome"] == "RUNNING"]
    assert all(b["label"] for b in grey), grey
    if _steady_died(shown):
        assert grey, (grey, _outage_story(shown))
    assert all(start - 0.2 <= at <= end for at in f["ended_in_gap"].values()), (f["ended_in_gap"], f["gaps"])


@says("10_broker_trouble")
def default_policy_raises_tuned_policy_rides_it_out(shown):
    """"With the default policy ... each call made during the outage raised OperationalError after about 0.6 s ...
    Those jobs exist nowhere ... (At most one may be the exception ...) With the tuned policy ... the one call made
    while the broker was down blocked until Redis was back ... and every call that returned is in
    the queue ... (in 2 of 15 runs) one call of this producer raised builtins.AttributeError instead ... Its job was
    not sent." """
    by = {r["producer"]: r for r in rows(shown, "publishing")}
    default, tuned = by["default policy"], by["tuned policy"]
    assert default["raised"] >= 2, default
    # "At most one may be the exception": a call whose reply the stopping Redis lost after saving its message
    assert default["returned"] <= default["in the queue"] <= default["returned"] + 1, default
    assert default["what was raised"] == "kombu.exceptions.OperationalError", default
    assert 0.5 <= default["longest call s"] <= 2.0, default
    assert tuned["raised"] <= 1, tuned
    assert tuned["in the queue"] == tuned["returned"] == tuned["calls"] - tuned["raised"], tuned
    assert tuned["what was raised"] == ("builtins.AttributeError" if tuned["raised"] else ""), tuned
    assert tuned["longest call s"] >= 2.0, tuned


@says("10_broker_trouble")
def llen_counts_one_list_true_depth_adds_held(shown):
    """"`LLEN outage.slow` reads one Redis list ... short by the prefetched messages always"; true = lists + held."""
    c = {r["count"]: r["messages"] for r in rows(shown, "counts")}
    llen, lists = c["LLEN outage.slow (the seed's count)"], c["every priority list (kombu, Flower)"]
    held, true = c["held by the worker (unacked)"], c["true depth: lists + held"]
    assert held >= 1 and true == lists + held and llen < lists, c
    lines = shown["backlog"]["lines"]
    assert any("unacked" in label for label in lines), lines.keys()


@says("10_broker_trouble")
def held_jobs_keep_the_unacked_line_up(shown):
    """"Prefetched jobs that were not given back are `held` (if `steady` died, or survived without restoring them):
    on the queue plot the *unacked* line is still up at the end, long after the last job ran." """
    f = shown["outage queue"]
    held = next(pts for label, pts in f["lines"].items() if "unacked" in label)
    jobs = {r["where"]: len(r["jobs"].split(", ")) for r in rows(shown, "fates") if r["sent"].startswith("burst")}
    if _steady_died(shown):
        assert jobs.get("held", 0) >= 1, jobs
    if jobs.get("held", 0):
        assert held[-1][1] >= jobs["held"], (held[-1], jobs)


def _flower_10(shown) -> dict:
    return {r["count"]: r["messages"] for r in rows(shown, "flower counts")}


@says("10_broker_trouble")
def flower_counts_the_lists_and_misses_the_held(shown):
    """"slow takes 4 more ... and holds them, and the other 16 wait ... the true depth read again after Flower is the
    same ... Flower's queue length is the sum of the priority lists, and so short of the true depth by exactly the
    held messages." """
    c = _flower_10(shown)
    lists = sum(v for k, v in c.items() if k.startswith("priority list "))
    held, true = c["held: unacked entries of outage.slow"], c["true depth: every list + held"]
    assert held == 4 and lists == 16 and true == lists + held, c
    assert c["true depth, read again after Flower"] == true, c
    assert c["queue length"] == lists == true - held, c
    assert c["LLEN outage.slow (the seed's count)"] == c["priority list 0-2"] < lists, c


@says("10_broker_trouble")
def flower_metrics_count_what_slow_holds_and_no_queue(shown):
    """"/metrics has no queue depth at all ... flower_worker_prefetched_tasks ... equals the held row ...
    flower_worker_number_of_currently_executing_tasks ... is 1, the long job ... So here Flower's queue length plus
    its prefetched gauge is the true depth." """
    c = _flower_10(shown)
    held, true = c["held: unacked entries of outage.slow"], c["true depth: every list + held"]
    prefetched = c["flower_worker_prefetched_tasks (slow)"]
    assert c["metrics about a queue"] == 0, c
    assert prefetched == held and c["flower_worker_number_of_currently_executing_tasks (slow)"] == 1, c
    assert c["queue length"] + prefetched == true, c
# -- 13 application, parts 1-4 ------------------------------------------------------------------------------
@says("13_application")
def a_task_sent_inside_the_transaction_reads_nothing(shown):
    """"Sent inside the transaction, `ship(1)` started before the commit and failed: the row it looked for was
    committed only after its failure was stored (the table's times, like the figure's, are in seconds since that
    order's BEGIN). In the figure its bar starts inside the open transaction and ends, when its failure was stored
    (the result's `date_done`), before the COMMIT line." """
    inside = rows(shown, "transactions")[0]
    assert inside["state"] == "FAILURE" and inside["result"] == "OrderMissing('order 1 not found')", inside
    assert 0 <= inside["started (s)"] <= inside["result stored (s)"] <= inside["committed (s)"], inside
    assert inside["row in the database"] == "yes", inside
    span = shown["transaction"]["spans"][0]
    assert span["task state"] == "FAILURE", span
    assert 0 <= span["task start"] <= span["task end"] <= span["commit"], span
    # one origin: the table's and the figure's times agree (the table rounds to the millisecond)
    assert abs(inside["committed (s)"] - span["commit"]) < 0.002, (inside, span)
    assert abs(inside["result stored (s)"] - span["task end"]) < 0.002, (inside, span)


@says("13_application")
def on_commit_sends_after_the_commit_and_never_after_a_rollback(shown):
    """"With `on_commit`, `ship(2)` was sent only after the commit, and shipped the order: its bar comes after the
    line." "The transaction of order 3 rolled back: its callback was dropped, no task was sent, and no row
    exists." """
    _, after, rolled = rows(shown, "transactions")
    assert after["state"] == "SUCCESS" and after["result"] == "shipped", after
    assert after["committed (s)"] <= after["sent (s)"] <= after["started (s)"] <= after["result stored (s)"], after
    span = shown["transaction"]["spans"][1]
    assert span["task state"] == "SUCCESS" and span["commit"] <= span["task start"] <= span["task end"], span
    assert abs(after["started (s)"] - span["task start"]) < 0.002, (after, span)
    assert (rolled["sent (s)"], rolled["state"], rolled["row in the database"]) == ("never", "no task", "no"), rolled


@says("13_application")
def a_copy_ships_a_cancelled_order_and_weighs_more(shown):
    """"`ship_copy` shipped a cancelled order: its copy said "paid". `ship(4)` ... saw the cancellation and skipped
    it." "The copy made its message many times bigger ... (`argsrepr`: at most 1024 characters ... here the items
    were elided) ... The message with the id is mostly headers." """
    copy, by_id = rows(shown, "ids or objects")
    assert (copy["status when it ran"], copy["action"]) == ("paid", "shipped"), copy
    assert (by_id["status when it ran"], by_id["action"]) == ("cancelled", "skipped"), by_id
    assert copy["whole message (bytes)"] >= 4 * by_id["whole message (bytes)"], (copy, by_id)
    assert copy["body (bytes)"] >= 20 * by_id["body (bytes)"], (copy, by_id)
    assert 100 < copy["argsrepr (chars)"] < 1024 < copy["body (bytes)"], copy
    assert by_id["body (bytes)"] * 5 < by_id["whole message (bytes)"], by_id


@says("13_application")
def old_messages_fail_only_the_required_argument(shown):
    """"The new `welcome` failed on the old message with `TypeError: welcome() missing 1 required positional
    argument: 'channel'` ... The three fixes each handled both forms" """
    by = {(r["sent by"], r["message"]): r for r in rows(shown, "deploy")}
    welcome = by[("version 1", "welcome(7)")]
    assert welcome["state"] == "FAILURE", welcome
    assert welcome["result"] == "TypeError: welcome() missing 1 required positional argument: 'channel'", welcome
    for sender, message in [("version 1", "receipt(7)"), ("version 1", "remind(7)"), ("version 1", "invoice(7)"),
                            ("version 2", "welcome(8, 'sms')"), ("version 2", "receipt(8, 'sms')"),
                            ("version 2", "remind(8, channel='sms')"), ("version 2", "invoice_v2(8, 'USD')")]:
        assert by[(sender, message)]["state"] == "SUCCESS", by[(sender, message)]
    assert by[("version 1", "invoice(7)")]["result"] == "invoice 7 in EUR", by[("version 1", "invoice(7)")]


@says("13_application")
def a_later_release_meets_kwargs_and_an_unknown_name(shown):
    """"`receipt` refused it (`unexpected keyword argument 'urgent'`), `remind`, with `**options`, ran ...
    `deploy.invoice_v3` ... its result set to FAILURE `NotRegistered`" """
    later = [r for r in rows(shown, "deploy") if r["sent by"] == "a later version"]
    receipt, remind, unknown = later
    assert receipt["state"] == "FAILURE" and "unexpected keyword argument 'urgent'" in receipt["result"], receipt
    assert remind["state"] == "SUCCESS" and remind["result"] == "remind 9 by sms", remind
    assert unknown["state"] == "FAILURE" and unknown["result"] == "NotRegistered: 'deploy.invoice_v3'", unknown


def _rate_rows_13(shown) -> tuple[dict, dict, dict]:
    return tuple(rows(shown, "rate table"))


@says("13_application")
def one_worker_keeps_ten_a_second(shown):
    """"One worker kept to the limit: ten starts took about 0.9 s or more, about ten a second." (The starts are
    task-started events, sent by the worker's main process: a loaded machine shifts each by a little, so the bounds
    leave 0.1 s.)"""
    one, _, _ = _rate_rows_13(shown)
    assert one["tasks"] == one["on shop"] == 10 and one["on second"] == 0, one
    assert one["first to last start (s)"] >= 0.8 and one["starts per second"] <= 11.5, one
    line = shown["rate limits"]["lines"]["rate_limit='10/s', one worker"]
    assert line[-1][0] >= 0.8 and line[-1][1] == 10, line[-1]


@says("13_application")
def two_workers_let_twice_through(shown):
    """"Two workers let through about twice that: each kept about its own ten a second (the "own rate" columns), and
    together they started nearly twenty a second, their line in the figure about twice as steep." """
    one, two, _ = _rate_rows_13(shown)
    assert two["on shop"] >= 3 and two["on second"] >= 3 and two["on shop"] + two["on second"] == 10, two
    # 5 starts a worker: 4 gaps, and under load one late start shortens the gaps after it (CI: 12.9/s once)
    assert two["shop's own rate (/s)"] <= 14 and two["second's own rate (/s)"] <= 14, two
    assert two["starts per second"] >= 1.4 * one["starts per second"], (one, two)
    lines = shown["rate limits"]["lines"]
    ends = {label: pts[-1][0] for label, pts in lines.items()}
    assert ends["rate_limit='10/s', two workers"] < 0.8 * ends["rate_limit='10/s', one worker"], ends


@says("13_application")
def the_shared_bucket_holds_both_workers_to_ten(shown):
    """"ten calls, on the same two workers, at about ten a second in all. Each call ran at most twice (the table's
    "most runs of one task"): once to reserve, once with its token." """
    one, two, shared = _rate_rows_13(shown)
    assert shared["tasks"] == 10 and shared["on shop"] + shared["on second"] == 10, shared
    assert shared["most runs of one task"] <= 2 and one["most runs of one task"] == two["most runs of one task"] == 1
    assert shared["first to last start (s)"] >= 0.8 and shared["starts per second"] <= 11.5, shared


@says("13_application")
def a_restart_forgets_revokes_unless_a_state_db_keeps_them(shown):
    """"Before the restart both workers listed both ids ... After the restart `shop` listed none, and ran its
    revoked task ...: SUCCESS" "`second` ... listed the ids again; it dropped its task instead of running it: state
    REVOKED, no run (the cross in the figure)." """
    by = {r["worker"]: r for r in rows(shown, "revokes and restarts")}
    shop, second = by["shop"], by["second"]
    assert shop["ids revoked before the restart"] == second["ids revoked before the restart"] == 2, by
    assert (shop["after the restart"], shop["its revoked task"], shop["it ran"]) == (0, "SUCCESS", 1), shop
    assert (second["after the restart"], second["its revoked task"], second["it ran"]) == (2, "REVOKED", 0), second


@says("13_application")
def revoked_in_the_backend_does_not_stop_a_run(shown):
    """"Yet right after `revoke()` both tasks already read **REVOKED** ... `shop`'s task ran anyway and stored SUCCESS
    over it. The `AsyncResult` that had read REVOKED still says REVOKED at the end ...; a fresh `AsyncResult` reads
    SUCCESS" """
    by = {r["worker"]: r for r in rows(shown, "revokes and restarts")}
    for row in by.values():
        assert row["state read after revoke()"] == row["that reader at the end"] == "REVOKED", row
    assert (by["shop"]["it ran"], by["shop"]["its revoked task"]) == (1, "SUCCESS"), by["shop"]


@says("13_application")
def the_figure_shows_each_task_after_its_worker_came_back(shown):
    """"ran its revoked task once it was running again and the countdown had ended"; the cross marks the drop."""
    f = shown["revokes"]
    marks, running = f["marks"], f["running"]
    assert marks["shop"]["what"] == "ran" and marks["second"]["what"] == "dropped as revoked", marks
    for worker, mark in marks.items():
        spans = running[worker]
        assert len(spans) == 2, (worker, spans)  # up, stopped, up again
        back = spans[1][0]
        assert spans[0][0] + spans[0][1] < back <= mark["at"] + 0.05, (worker, spans, mark)
    assert marks["shop"]["at"] >= f["eta"] - 0.3, (marks, f["eta"])  # eta: the send + 3 s, as the caller saw it
    assert f["revoked_at"] < f["eta"] and f["revoked_at"] <= f["stopping_at"], f


@says("13_application")
def terminate_kills_the_pool_process_running_the_task(shown):
    """"The pool process running `long_job` got SIGTERM and died; the worker started a new one in its place (the
    pool's pids), logged `Terminating <id> (15)` ..., and stored the state REVOKED. The job's `finished` entry was
    never written" """
    said = {r["what"]: r["value"] for r in rows(shown, "terminate")}
    child = said["pool process that ran long_job"]
    assert child in said["shop's pool before the revoke"] and child not in said["shop's pool after"], said
    assert said["shop's pool after"] not in ("[]", said["shop's pool before the revoke"]), said
    assert said["that process still alive"] == "False" and said["job state"] == "REVOKED", said
    assert said["ledger entries of the job"] == "started", said
    assert said["worker log"].startswith("Terminating ") and said["worker log"].endswith(" (15)"), said
# -- 13 application, parts 5-7 ------------------------------------------------------------------------------
REFUSED_13 = ("Received invalid task message: Refusing to deserialize untrusted content of type pickle "
              "(application/x-python-serialize)")


@says("13_application")
def a_default_worker_refuses_pickle_and_stores_nothing(shown):
    """"`strict` **refused** both pickle messages ... `Received invalid task message: Refusing to deserialize
    untrusted content of type pickle (application/x-python-serialize)` ... nothing left in the queue, no result
    stored, so the state stays **PENDING for ever** ... The payload never ran: no file." """
    for row in rows(shown, "pickle on the broker")[:2]:
        assert row["worker"] == "strict" and row["accept_content"] == "json", row
        assert row["worker logged"] == REFUSED_13, row
        assert (row["state"], row["left in its queue"], row["payload ran in"]) == ("PENDING", 0, "nowhere"), row


@says("13_application")
def a_pickle_worker_runs_the_payload_in_both_processes(shown):
    """"`loose` ran the payload **twice** ...: the worker's **main process** ... and the **pool child** ... The task
    itself ... then ran and returned"; "With a name no worker knows, nothing was decoded" (5.7 stores NotRegistered)."""
    known, unknown = rows(shown, "pickle on the broker")[2:]
    assert known["worker"] == unknown["worker"] == "loose" and known["accept_content"] == "json, pickle", known
    ran = known["payload ran in"].split(", ")
    assert len(ran) == 2 and ran[0].startswith("main process ") and ran[1].startswith("pool child "), known
    assert ran[0].split()[-1] != ran[1].split()[-1], known
    assert known["state"] == "SUCCESS" and "succeeded" in known["worker logged"], known
    assert known["worker logged"].startswith("Task celery.accumulate[<id>]"), known
    assert unknown["worker logged"] == "Received unregistered task of type 'no.such.task'.", unknown
    assert (unknown["state"], unknown["payload ran in"]) == ("FAILURE", "nowhere"), unknown
    assert known["left in its queue"] == unknown["left in its queue"] == 0


@says("13_application")
def celery_refuses_a_pickle_worker_as_root(shown):
    """"A worker that accepts pickle refuses to start as **root** ... unless the environment variable
    `C_FORCE_ROOT` is set ... (In a root container the table's second row says "refuses to start"; as an ordinary
    user, "starts".)" """
    json_only, pickle = rows(shown, "pickle guard")
    assert json_only["a worker started here"] == "starts", json_only
    said = pickle["a worker started here"]
    if pickle["user"] == "uid 0" and pickle["C_FORCE_ROOT"] == "unset":
        assert said == ("refuses to start: Running a worker with superuser privileges when the worker accepts "
                        "messages serialized with pickle is a very bad idea!"), pickle
    else:
        assert said == "starts" or said.startswith("refuses to start: "), pickle


@says("13_application")
def broker_urls_read_as_the_text_says(shown):
    """"`:**@` appears **whether or not** there is a password (the row "no password")"; kombu "logs `Secure redis
    scheme specified (rediss) with no ssl options, defaulting to insecure SSL behaviour.`... sets
    `ssl_cert_reqs=CERT_NONE`"; "a `rediss://` URL without `ssl_cert_reqs` is refused with `ValueError`" """
    by = {r["what"]: r for r in rows(shown, "broker urls")}
    assert by["no password"]["as Celery logs it"] == "redis://:**@redis.internal:6379/0", by["no password"]
    assert by["no password"]["password"] == "no" and by["a password (requirepass)"]["password"] == "yes"
    acl = by["an ACL user and its password"]
    assert acl["as Celery logs it"].startswith("redis://celery:**@") and acl["password"] == "yes", acl
    loose = by["TLS, no broker_use_ssl"]
    assert loose["TLS: ssl_cert_reqs"] == "CERT_NONE", loose
    assert loose["said"] == ("Secure redis scheme specified (rediss) with no ssl options, defaulting to insecure "
                             "SSL behaviour."), loose
    assert by["TLS, broker_use_ssl with CERT_REQUIRED"]["TLS: ssl_cert_reqs"] == "CERT_REQUIRED"
    assert by["TLS, broker_use_ssl with CERT_REQUIRED"]["said"] == "-"
    refused = by["result_backend: TLS, no ssl_cert_reqs"]
    assert refused["said"].startswith("ValueError: A rediss:// URL must have parameter ssl_cert_reqs"), refused
    assert by["result_backend: TLS, ?ssl_cert_reqs=required"]["TLS: ssl_cert_reqs"] == "CERT_REQUIRED"
    assert by["no password"]["TLS: ssl_cert_reqs"] == "no", by["no password"]


@says("13_application")
def the_payloads_wrote_only_in_a_removed_temporary_folder(shown):
    """"the file sits in a temporary folder this part creates and removes" (only the `loose` payload wrote)."""
    (left,) = rows(shown, "security leftovers")
    assert left["files the payloads wrote"] == "loose.pids" and left["folder still there"] is False, left


@says("13_application")
def an_async_task_never_runs_its_body(shown):
    """"`fetch_async` **failed without running its body** ... `json` ... raised `TypeError('Object of type coroutine
    is not JSON serializable')`, which kombu re-raised as `EncodeError` ... the worker's log line `raised
    unexpected: EncodeError(TypeError(...))`; the stored result an `EncodeError` whose message is that `TypeError`'s
    repr ... No ledger entry";
    "`fetch_async_quiet` ... logged it as **succeeded** (its event says SUCCESS, in a fraction of the 2 s its body
    waits), with `<coroutine object fetch_async_quiet ...>` ... `RuntimeWarning: coroutine
    'fetch_async_quiet' was never awaited` ... Its stored state is PENDING"; "`fetch` ... SUCCESS, and the body's
    ledger entry." """
    wrong, quiet, right = rows(shown, "async task")
    assert (wrong["worker's event"], wrong["stored state"], wrong["coroutine body ran"]) == ("FAILURE", "FAILURE", 0)
    assert wrong["stored result"] == "EncodeError: TypeError('Object of type coroutine is not JSON serializable')"
    assert "raised unexpected: EncodeError(TypeError(" in wrong["worker logged"], wrong
    for row in (wrong, quiet, right):  # cut between words, never inside one
        logged = row["worker logged"]
        assert len(logged) <= 100 and (not logged.endswith(" ...") or logged[:-4] == logged[:-4].rstrip()), row
    assert (quiet["worker's event"], quiet["stored state"], quiet["coroutine body ran"]) == ("SUCCESS", "PENDING", 0)
    assert quiet["ran for (s)"] < 1.0 and ": <coroutine object fetch_async_quiet" in quiet["worker logged"], quiet
    assert quiet["RuntimeWarning in the log"] == "coroutine 'fetch_async_quiet' was never awaited", quiet
    assert (right["worker's event"], right["stored state"], right["coroutine body ran"]) == ("SUCCESS", "SUCCESS", 1)
    assert right["ran for (s)"] >= 0.1, right


@says("13_application")
def awaits_in_one_task_wait_together(shown):
    """"The 10 waits inside one task waited **together**, on one event loop in one pool process: they all ended
    within a tenth of a second of each other, one wait of 0.2 s for all ten. As 10 tasks they took at least
    10 x 0.2 / 2 = 1 s, their ends spread over most of it" """
    one, many = rows(shown, "awaits")
    assert (one["tasks"], one["awaits of 0.2 s"], one["pool processes"]) == (1, 10, 1), one
    assert one["first to last await ended (s)"] <= 0.1, one
    assert (many["tasks"], many["awaits of 0.2 s"]) == (10, 10) and many["pool processes"] <= 2, many
    assert many["from send to last result (s)"] >= 0.95 and many["first to last await ended (s)"] >= 0.7, many
    assert one["from send to last result (s)"] < many["from send to last result (s)"], (one, many)
    bars = shown["async timeline"]["bars"]
    assert [b["name"].rsplit(".", 1)[-1] for b in bars if b["outcome"] == "FAILURE"] == ["fetch_async"], bars
    (gathered,) = [b for b in bars if b["label"] == "10 awaits"]
    assert gathered["name"].endswith(".fetch_many") and gathered["outcome"] == "SUCCESS", gathered
    assert sum(b["name"].endswith(".fetch") for b in bars) == 11, bars


@says("13_application")
def the_three_short_runs_are_named_in_the_timeline(shown):
    """The async timeline marks the three short runs (fetch_async, fetch_async_quiet, fetch), each on its own bar,
    and names them in the legend."""
    f = shown["async timeline"]
    assert {name: task.rsplit(".", 1)[-1] for name, task in f["tagged"].items()} == {
        "fetch_async": "fetch_async", "fetch_async_quiet": "fetch_async_quiet", "fetch": "fetch"}, f["tagged"]


EAGER_13, EMBEDDED_13, PROCESS_13 = ("eager (task_always_eager=True)", "start_worker (this process, solo)",
                                     "worker process (prefork)")


@says("13_application")
def eager_mode_hides_what_real_workers_catch(shown):
    """The "eager vs worker" table: the `Order` "raised `EncodeError` in eager mode too"; "the pickled call returned
    its result. Both real workers ... discarded the message"; "The set came back as a set; the workers could not
    store it (`EncodeError`, FAILURE)"; "So does the test helper's worker ... Only the worker process's pool child
    raised `SoftTimeLimitExceeded`"; "the first `self.retry()` **escaped to the caller** ... Both workers retried
    twice and returned 2"; "By id it is PENDING, and Celery itself warns (`RuntimeWarning`)" """
    arg, pickle, a_set, limit, retry, by_id = rows(shown, "eager vs worker")
    both = (EMBEDDED_13, PROCESS_13)
    for col in (EAGER_13, *both):
        assert arg[col] == "raised EncodeError: Object of type Order is not JSON serializable", arg
    assert pickle[EAGER_13] == "returned 'shipped order 7'", pickle
    assert all(pickle[c] == "PENDING, worker logged: Received invalid task message" for c in both), pickle
    assert a_set[EAGER_13].startswith("returned {") and "'urgent'" in a_set[EAGER_13] and "'vip'" in a_set[EAGER_13]
    assert all(a_set[c] == "raised EncodeError: TypeError('Object of type set is not JSON serializable')"
               for c in both), a_set
    assert limit[EAGER_13] == limit[EMBEDDED_13] == "returned 'done'", limit
    assert limit[PROCESS_13].startswith("raised SoftTimeLimitExceeded"), limit
    assert retry[EAGER_13] == "raised Retry: Retry in 0.3s", retry
    assert all(retry[c] == "returned 2" for c in both), retry
    assert by_id[EAGER_13].startswith("PENDING (RuntimeWarning: Results are not stored in backend"), by_id
    assert all(by_id[c] == "SUCCESS" for c in both), by_id


@says("13_application")
def eager_retries_ignore_the_countdown(shown):
    """"Eager mode with `task_eager_propagates=False` ran all three attempts at once, no `countdown` honoured ...;
    with `True`, only the first attempt ran. Both real workers waited the 0.3 s countdown before each retry." """
    by = {r["run"]: r for r in rows(shown, "retries eager vs worker")}
    gaps = {run: [float(g) for g in r["gaps between attempts (s)"].split(", ") if g] for run, r in by.items()}
    inline = by["eager, propagates False"]
    assert inline["attempts"] == 3 and inline["the caller got"] == "returned 2", inline
    assert len(gaps["eager, propagates False"]) == 2 and max(gaps["eager, propagates False"]) < 0.2, inline
    assert by["eager"]["attempts"] == 1 and by["eager"]["the caller got"].startswith("raised Retry"), by["eager"]
    for run in ("start_worker", "worker process"):
        assert by[run]["attempts"] == 3 and by[run]["the caller got"] == "returned 2", by[run]
        assert len(gaps[run]) == 2 and min(gaps[run]) >= 0.29, by[run]


@says("13_application")
def the_pytest_plugin_fixtures_are_read_from_its_source(shown):
    """"`celery_worker` is `start_worker(celery_app, pool=celery_worker_pool, ...)` for one test;
    `celery_session_worker` lives for the whole run"; its default pool is solo; `celery_config` to override."""
    by = {r["fixture"]: r for r in rows(shown, "pytest fixtures")}
    assert by["celery_worker"]["scope"] == by["celery_app"]["scope"] == "function", by
    assert by["celery_session_worker"]["scope"] == "session", by["celery_session_worker"]
    assert by["celery_worker_pool"]["returns"] == "'solo'" and by["celery_config"]["returns"] == "{}", by
    assert {"celery_includes", "celery_worker_parameters", "celery_parameters"} <= set(by), sorted(by)
    for name in ("celery_session_app", "celery_session_worker"):  # session scoped: they stop with the session
        assert by[name]["scope"] == "session" and by[name]["returns"] == "(yields, stops after the session)", by[name]
    assert by["celery_worker"]["returns"] == "(yields, stops after the test)", by["celery_worker"]


@says("13_application")
def apply_skips_the_serializer(shown):
    """"Neither call went through a serializer: the `Order` object reached the task as it was, and the set came back
    a set, where both workers failed (`EncodeError`)." """
    ship, tags = rows(shown, "apply")
    assert ship["a test sees"] == "returned 'shipped order 7'", ship
    assert tags["a test sees"].startswith("returned {") and "'vip'" in tags["a test sees"], tags
