"""Figures that say what they show: their facts, their layout checks (which must catch a bad figure), the
timeline's tiers, the retries plot's ×N marks, the live dashboard's lines and size, and the order of events that
once left a finished task PENDING. Recordings here are built from event lists, as a saved recording replays."""
from __future__ import annotations

import nbformat
import pytest

from coursekit import facts, plots
from coursekit.observe import Recording

NODE = "w1-100@host"


def event(t, kind, uuid, name="labs.job", node=NODE, pid=7, **extra):
    return {"t": t, "type": kind, "uuid": uuid, "hostname": node, "pid": pid, "name": name, **extra}


def run(t0, t1, uuid, outcome="task-succeeded", name="labs.job", node=NODE, pid=7):
    return [event(t0 - 0.002, "task-received", uuid, name, node, pid), event(t0, "task-started", uuid, name, node, pid),
            event(t1, outcome, uuid, name, node, pid)]


def shown(fig) -> dict:
    """The facts a notebook output of `fig` carries, as a lesson test reads them."""
    data, metadata = fig._repr_mimebundle_()
    assert bytes(data["image/png"][:4]) == b"\x89PNG"
    return metadata[facts.KEY]


def test_a_task_sent_event_stamped_after_the_run_does_not_undo_it():
    """Celery stamps task-sent after publishing: a fast worker can finish first. The task is still SUCCESS."""
    rec = Recording(started_at=0, duration=1.0,
                    events=run(0.10, 0.12, "a") + [event(0.13, "task-sent", "a", node="notebook@host")])
    assert rec.tasks.state.tolist() == ["SUCCESS"]
    assert rec.state_changes()[-1][2] == "SUCCESS"
    assert rec.settled(["a"]) and not rec.settled(["a", "missing"])


def test_runs_too_close_to_tell_apart_get_tiers_and_the_failure_shows():
    events = run(2.000, 2.004, "ok") + run(2.030, 2.033, "bad", outcome="task-failed") + run(6.0, 6.01, "later")
    rec = Recording(started_at=0, duration=10.0, events=events)
    got = shown(plots.timeline(rec))
    tiers = {b["task_id"]: b["tier"] for b in got["bars"]}
    assert tiers == {"ok": 0, "bad": 1, "later": 0}
    assert got["overlapping_bars"] == 0 and sorted(b["outcome"] for b in got["bars"]) == ["FAILURE", "SUCCESS",
                                                                                           "SUCCESS"]
    assert not any(got["layout"].values())


def test_a_window_zooms_in_on_the_runs_that_start_in_it():
    events = [e for k in range(10) for e in run(3.0 + k * 0.015, 3.005 + k * 0.015, f"r{k}")] + run(1.0, 1.1, "x")
    rec = Recording(started_at=0, duration=5.0, events=events)
    got = shown(plots.timeline(rec, window=(2.99, 3.15)))
    assert len(got["bars"]) == 10 and {b["tier"] for b in got["bars"]} == {0}
    assert not any(got["layout"].values())


def test_copies_that_start_together_are_one_dot_marked_with_their_count():
    events = (run(1.0, 1.01, "t", outcome="task-retried") + run(4.0, 4.01, "t", node="a@host") +
              run(4.004, 4.02, "t", node="b@host") + run(4.03, 4.04, "t", node="a@host", pid=8) +
              run(2.0, 2.01, "s", outcome="task-retried") + run(2.5, 2.51, "s", outcome="task-retried") +
              run(3.0, 3.01, "s"))
    rec = Recording(started_at=0, duration=5.0, events=events)
    got = shown(plots.retries(rec))
    t, s = got["tasks"]["t"], got["tasks"]["s"]
    assert [m["count"] for m in t["marks"]] == [1, 3] and t["runs"] == 4 and t["gap_labels"] == ["3.0s"]
    assert [m["count"] for m in s["marks"]] == [1, 1, 1] and s["gap_labels"] == ["0.5s", "0.5s"]
    assert got["xlabel"] == plots.RETRY_AXIS
    assert not any(got["layout"].values()), got["layout"]


def test_the_layout_check_catches_what_a_reader_would_trip_on():
    fig, ax = plots.figure("a figure with every fault")
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.annotate("×3", (9.9, 5), textcoords="offset points", xytext=(6, 0))  # over the right edge of the frame
    ax.text(5, 5, "0.5s")
    ax.text(5.05, 5, "0.5s")  # over the first
    ax.scatter([2, 2.02], [2, 2], s=50)  # one dot on the other
    ax.plot([0], [5], "o")  # a marker on the frame
    fig.text(0.95, 0.5, "beyond the figure")  # runs off the right edge
    layout = shown(fig)["layout"]
    assert ["0.5s", "0.5s"] in layout["overlapping_labels"]
    assert "text '×3'" in layout["outside_frame"] and any("marker" in p for p in layout["outside_frame"])
    assert layout["overlapping_dots"] == 1
    assert "beyond the figure" in layout["cut_off_labels"]


def test_queue_plot_lines_and_the_live_view_draw_the_same_series():
    from coursekit.dashboard import QueueView

    events = run(1.0, 1.5, "a") + run(3.0, 3.2, "b")
    samples = [(t / 4, "calling", 3 if t < 4 else 0, 2 if 8 <= t < 12 else 0) for t in range(20)]
    rec = Recording(started_at=0, duration=5.0, events=events, queue_samples=samples)
    series = plots.queue_series(rec, running=True)
    assert list(series) == ["calling: waiting", plots.UNACKED, plots.RUNNING]
    running = list(zip(*series[plots.RUNNING]))
    assert max(level for _, level in running) == 1 and running[-1] == (5.0, 0)
    static = shown(plots.queue_depth(rec, running=True))
    assert set(static["lines"]) == set(series) and not any(static["layout"].values())

    view = QueueView()
    frame = view.frame(rec)
    assert frame[:4] == b"\x89PNG" and view.pixels == (860, 320)
    live = view.fig.all_facts()
    assert live["lines"] == static["lines"], "the dashboard draws what the static plot draws"
    assert not any(live["layout"].values()), live["layout"]


def test_priority_lists_are_stacked_bottom_up_and_labelled_by_their_range():
    """Redis holds a queue as one list per priority step: `by_priority` stacks them (the top is the queue's
    total, so its line is left out), the list workers take from first at the bottom, the legend top-down."""
    lists, totals = [], []
    for i in range(12):  # 3, 2, 1, 2 messages in the lists of 0, 3, 6 and 9; one taken every 0.25 s from t=1
        t, left = i / 4, min(8, 12 - i)
        held = {0: min(3, max(0, left - 5)), 3: min(2, max(0, left - 3)), 6: min(1, max(0, left - 2)),
                9: min(2, left)}
        lists += [(t, "prioritised", step, n) for step, n in held.items()]
        totals.append((t, "prioritised", sum(held.values()), 1 if i >= 4 else 0))
    rec = Recording(started_at=0, duration=3.0, queue_samples=totals, list_samples=lists)
    fig = shown(plots.queue_depth(rec, by_priority=True))
    assert list(fig["stacked"]) == ["priority 0-2, none", "priority 3-5", "priority 6-8", "priority 9 and above"]
    assert [max(y for _, y in layer) for layer in fig["stacked"].values()] == [3, 2, 1, 2]
    assert set(fig["lines"]) == {plots.UNACKED}, "the stack's top is the queue's line"
    assert not any(fig["layout"].values()), fig["layout"]
    figure = plots.queue_depth(rec, by_priority=True)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["priority 9 and above", "priority 6-8", "priority 3-5", "priority 0-2, none", plots.UNACKED]
    assert plots.priority_range([0, 5], 0) == "0-4, none" and plots.priority_range([0, 1, 2], 1) == "1"
    # a recording without list samples (RabbitMQ, or saved before they were sampled) draws its total line
    plain = shown(plots.queue_depth(Recording(started_at=0, duration=3.0, queue_samples=totals), by_priority=True))
    assert "stacked" not in plain and "prioritised: waiting" in plain["lines"]


def test_timeline_labels_bars_and_names_lanes_in_the_order_given():
    events = run(0.1, 0.3, "a", node="busy-1@host", pid=1) + run(0.1, 0.4, "b", node="idle-1@host", pid=2)
    rec = Recording(started_at=0, duration=1.0, events=events)
    fig = plots.timeline(rec, labels={"a": "p9"}, lane_names={"idle": "the idle one", "busy": "the busy one"})
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["the busy one", "the idle one"], "the first named lane is on top"
    facts_ = shown(fig)
    assert {b["task_id"]: (b["label"], b["lane"]) for b in facts_["bars"]} == {
        "a": ("p9", "the busy one"), "b": (None, "the idle one")}
    assert not any(facts_["layout"].values())


def test_the_dashboard_image_keeps_its_aspect_ratio():
    from coursekit.dashboard import Dashboard
    from coursekit.observe import Recorder
    from coursekit.labs.first import app

    board = Dashboard(Recorder(app), draw=plots.queue_depth)
    layout = board.image.layout
    assert (layout.width, layout.height, layout.max_width) == ("100%", "auto", "860px")


def test_tables_and_figures_are_read_back_by_name():
    import pandas as pd

    nb = nbformat.v4.new_notebook()
    fig, ax = plots.figure("a plot")
    ax.bar([0, 1], [2, 3], label="heights")
    table = facts.table(pd.DataFrame({"state": ["SUCCESS"], "started": [float("nan")]}), "states")
    for obj in (fig, table):
        data, metadata = obj._repr_mimebundle_()
        nb.cells.append(nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "display_data", data={k: v if isinstance(v, str) else "png" for k, v in data.items()},
            metadata=metadata)]))
    got = facts.read(nb)
    assert got["a plot"]["bars"] == {"heights": [[0, 2], [1, 3]]}
    assert got["states"]["rows"] == [{"state": "SUCCESS", "started": None}] and got["states"]["cell"] == 2
    nb.cells.append(nb.cells[-1])
    with pytest.raises(ValueError, match="two outputs are named 'states'"):
        facts.read(nb)


def test_lanes_name_the_worker_and_with_hosts_its_machine():
    events = run(1.0, 1.2, "a", node="c-100@here", pid=7) + run(1.1, 1.3, "b", node="far-100@far", pid=9)
    rec = Recording(started_at=0, duration=2.0, events=events)
    assert {b["lane"] for b in shown(plots.timeline(rec))["bars"]} == {"c pid 7", "far pid 9"}
    got = shown(plots.timeline(rec, hosts=True))
    assert {b["lane"] for b in got["bars"]} == {"c@here pid 7", "far@far pid 9"} and not any(got["layout"].values())
    assert plots.lane_label("celery@host", 3) == "celery pid 3"
    assert plots.lane_label("my-worker@x", 2) == "my-worker pid 2"


def test_a_queue_plot_shows_only_the_queues_and_the_stretch_asked_for():
    samples = [(t / 4, q, 5 if (q == "slow" and 4 <= t < 12) else 0, 0) for t in range(20) for q in ("fast", "slow")]
    rec = Recording(started_at=0, duration=5.0, queue_samples=samples)
    got = shown(plots.queue_depth(rec, queues=["slow"], unacked=False, window=(0.5, 4.0)))
    assert list(got["lines"]) == ["slow: waiting"]
    line = got["lines"]["slow: waiting"]
    assert line[0] == [0.5, 0.0] and [1.0, 5.0] in line and [3.0, 0.0] in line and line[-1][0] <= 4.0
    assert not any(got["layout"].values()), got["layout"]
