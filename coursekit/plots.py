"""Figures drawn from a Recording's DataFrames, with matplotlib's object API (no pyplot state, any backend).

Each function returns a `CourseFigure`; in a notebook `display(fig)` shows it, `fig.savefig(...)` writes it. Shown
in a notebook, a CourseFigure's output also carries its facts (see facts.py): the series, bars and marks it draws,
and its layout checks (labels that overlap, marks on or outside the frame), which the lesson tests read.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from . import facts as facts_
from .observe import Recording
from .worker import short_name

OUTCOME_COLOURS = {"SUCCESS": "tab:green", "FAILURE": "tab:red", "RETRY": "tab:orange", "LOST": "black",
                   "RUNNING": "tab:gray", "REVOKED": "tab:purple"}
# Drawn in this order, so that the rarer, more important outcomes lie on top.
OUTCOME_RANK = {"SUCCESS": 0, "RUNNING": 1, "RETRY": 2, "REVOKED": 3, "LOST": 3, "FAILURE": 4}
STATE_ORDER = ["PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"]
TIME_AXIS = "seconds since the recording started"
UNACKED = "unacked (held by workers)"
RUNNING = "running (from events)"


class CourseFigure(Figure):
    """A Figure that renders itself as PNG in a notebook, whether or not pyplot was ever imported, with its
    facts in the output's metadata. `facts` holds what the drawing function knows (bars, marks); the generic
    part (series, bars, labels, layout) is read from the drawn figure when it is shown."""

    def __init__(self, *args, name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = name
        self.facts: dict = {}

    def _repr_png_(self) -> bytes:
        return png(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        image, renderer = _draw(self)
        return {"image/png": image}, {facts_.KEY: self.all_facts(renderer)}

    def all_facts(self, renderer=None) -> dict:
        if renderer is None:
            _, renderer = _draw(self)
        ax = self.axes[0] if self.axes else None
        found = {"name": self.name or (ax.get_title() if ax else ""), "kind": "figure",
                 "title": ax.get_title() if ax else "", "xlabel": ax.get_xlabel() if ax else "",
                 "ylabel": ax.get_ylabel() if ax else "", **drawn(self), **self.facts}
        found["layout"] = layout_problems(self, renderer)
        return facts_.jsonable(found)


def _draw(fig: Figure):
    """Draw with Agg once: the PNG bytes, and the renderer that placed every artist (for the layout checks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    out = io.BytesIO()
    Image.fromarray(np.asarray(canvas.buffer_rgba())).save(out, format="png", dpi=(fig.dpi, fig.dpi))
    return out.getvalue(), canvas.get_renderer()


def png(fig: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach an Agg canvas: savefig then needs no pyplot backend
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


def figure(title: str, ylabel: str = "", width: float = 8, height: float = 3, fast: bool = False,
           name: str | None = None) -> tuple[CourseFigure, object]:
    """A figure with one axes, titled, its x axis in seconds since the recording started.

    `fast` (live dashboards) uses fixed margins: constrained layout draws the figure twice to place labels.
    `name` is how a lesson's tests find the figure's facts (default: the title).
    """
    fig = CourseFigure(figsize=(width, height), layout=None if fast else "constrained", name=name)
    if fast:
        fig.subplots_adjust(left=0.17, right=0.79, bottom=0.2, top=0.86)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(TIME_AXIS)
    ax.set_ylabel(ylabel)
    return fig, ax


def lane_label(node: str, pid: int, host: bool = False) -> str:
    """'w1 pid 1234' for node 'w1-<kernel pid>@host': the worker's short name and the process; with `host`,
    'w1@host pid 1234', for workers on several machines."""
    where = f"@{node.split('@', 1)[1]}" if host and "@" in node else ""
    return f"{short_name(node)}{where} pid {pid}"


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes, color="gray")


# -- the timeline -------------------------------------------------------------------------------------------
MAX_TIERS = 6
def timeline_bars(runs: pd.DataFrame, end_of_data: float, lo: float, hi: float,
                  lanes: list[tuple] | None = None) -> pd.DataFrame:
    """Where each run's bar goes: its lane (worker process), its tier in the lane, and its drawn extent.

    A 4 ms run is narrower than a pixel over a minute, so a bar is at least 0.7% of the axis wide; runs closer
    together than that would hide one another, so they go on separate tiers of their lane (first fit). Every run
    stays a bar of its own: a failed run beside a successful one 30 ms away is still seen. Past MAX_TIERS, a
    crowd of runs is drawn overlapping, as a block."""
    lanes = lanes or sorted(set(zip(runs.node, runs.pid)))  # (node, pid), from the bottom lane up
    lane_of = {lane: i for i, lane in enumerate(lanes)}
    span = max(hi - lo, 1e-3)
    min_width, gap = span * 0.007, span * 0.004
    out = runs.assign(lane=[lane_of[(n, p)] for n, p in zip(runs.node, runs.pid)],
                      x0=runs.started.astype(float), end=runs.ended.astype(float).fillna(end_of_data))
    out["x1"] = np.maximum(out.end, out.x0 + min_width)
    lane, x0, x1 = out.lane.to_numpy(), out.x0.to_numpy(), out.x1.to_numpy()
    tier = np.zeros(len(out), dtype=int)
    tier_ends: dict[int, list[float]] = {}  # per lane: where each tier's last bar ends
    for i in np.lexsort((x0, lane)):  # plain arrays: a live timeline places thousands of runs every frame
        ends = tier_ends.setdefault(lane[i], [])
        k = next((k for k, last in enumerate(ends) if last + gap <= x0[i]), len(ends))
        if k == MAX_TIERS:  # a crowd: bars overlap in the tier that frees first (overlapping_bars counts them)
            k = int(np.argmin(ends))
        if k == len(ends):
            ends.append(x1[i])
        else:
            ends[k] = x1[i]
        tier[i] = k
    out["tier"] = tier
    tiers = out.groupby("lane").tier.transform("max") + 1
    out["height"] = 0.7 / tiers * np.where(tiers > 1, 0.8, 1.0)  # stacked tiers keep a gap between them
    out["y0"] = out.lane - 0.35 + out.tier * 0.7 / tiers
    return out.drop(columns="end")


def timeline(rec: Recording, title: str = "Which process ran which task, when", fast: bool = False,
             window: tuple[float, float] | None = None, name: str | None = None, hosts: bool = False,
             labels: dict[str, str] | None = None, lane_names: dict[str, str] | None = None) -> Figure:
    """One lane per worker process, one bar per run; hatched bars are retries and redeliveries.

    `window=(t0, t1)` (seconds since the recording started) zooms in on the runs that start in it. `hosts`
    labels each lane with its worker's host too (workers on several machines). `labels` (task id -> short text)
    writes a text in the middle of each of those tasks' bars. `lane_names` (worker name, as in
    `Worker(name=...)` -> text) names lanes by what each worker is for instead of by its pid."""
    runs = rec.runs
    if window is not None:
        runs = runs[runs.started.between(*window)]
    lanes = sorted(set(zip(runs.node, runs.pid)))
    if lane_names:  # lanes of named workers first, from the top, in the order named
        order = list(lane_names)
        def rank(lane) -> int:
            worker = short_name(lane[0])
            return -order.index(worker) if worker in order else -len(order)

        lanes.sort(key=rank)
    fig, ax = figure(title, height=1.3 + 0.5 * max(1, len(lanes)), fast=fast, name=name)
    if runs.empty:
        _empty(ax, "task runs")
        return fig
    end_of_data = max(rec.duration, runs.started.max())
    if window is None:
        lo, hi = 0.0, end_of_data  # the same time axis as the queue plot of the same recording
    else:
        ends = runs.ended.astype(float).fillna(end_of_data)
        lo, hi = min(window[0], runs.started.min()), max(window[1], ends.max())
        pad = (hi - lo) * 0.03
        lo, hi = lo - pad, hi + pad
    bars = timeline_bars(runs, end_of_data, lo, hi, lanes)
    hi = max(hi, bars.x1.max())  # a run that starts at the very end still gets its minimum width
    bars["again"] = bars.kind != "first"
    # one collection per tier, outcome and kind, not one artist per run: thousands of runs stay cheap to draw
    for (outcome, again, y0, height), part in bars.groupby(["outcome", "again", "y0", "height"]):
        ax.broken_barh(list(zip(part.x0, part.x1 - part.x0)), (y0, height),
                       facecolors=OUTCOME_COLOURS.get(outcome, "tab:blue"), edgecolor="black", linewidth=0.5,
                       hatch="//" if again else None, zorder=2 + OUTCOME_RANK.get(outcome, 0))
    if labels:
        for b in bars[bars.task_id.isin(list(labels))].itertuples():
            ax.text((b.x0 + b.x1) / 2, b.y0 + b.height / 2, labels[b.task_id], ha="center", va="center",
                    fontsize="small", color="white", fontweight="bold", zorder=10)
    names = [(lane_names or {}).get(short_name(n)) or lane_label(n, p, hosts) for n, p in lanes]
    ax.set_yticks(range(len(lanes)), names)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlim(lo, hi)
    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLOURS.items() if o in set(bars.outcome)]
    if bars.again.any():
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="retry/redelivery"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    _shade_gaps(ax, rec)
    lane_text = dict(zip(lanes, names))
    fig.facts.update(bars=[{"task_id": b.task_id, "name": b.name, "outcome": b.outcome, "kind": b.kind,
                            "lane": lane_text[(b.node, b.pid)], "tier": b.tier, "x0": b.x0, "x1": b.x1,
                            "label": (labels or {}).get(b.task_id), "y": b.y0 + b.height / 2}
                           for b in bars.itertuples()],
                     overlapping_bars=_overlapping_bars(bars))
    return fig


def _overlapping_bars(bars: pd.DataFrame) -> int:
    """Pairs of drawn bars that share a tier and overlap: each hides part of the other."""
    count = 0
    for _, part in bars.groupby(["lane", "tier"]):
        x = part.sort_values("x0")
        count += int((x.x0.to_numpy()[1:] < x.x1.to_numpy()[:-1]).sum())
    return count


# -- queues -------------------------------------------------------------------------------------------------
def queue_series(rec: Recording, unacked: bool = True, running: bool = False,
                 queues: list[str] | None = None) -> dict[str, tuple]:
    """The lines of a queue plot, label -> (t, count): messages waiting in each queue (or only in `queues`);
    with `unacked`, the messages workers hold without having acknowledged them (Redis's `unacked` hash:
    prefetched, or waiting for a countdown/eta); with `running`, the task runs in progress, from the workers'
    events."""
    q = rec.queues
    if queues is not None:
        q = q[q.queue.isin(queues)]
    out = {f"{name}: waiting": (part.t.to_numpy(), part.depth.to_numpy()) for name, part in q.groupby("queue")}
    held = q.drop_duplicates("t").dropna(subset=["unacked"])
    if unacked and not held.empty:
        out[UNACKED] = (held.t.to_numpy(), held.unacked.to_numpy().astype(int))
    if running:
        runs = rec.runs
        until = max([rec.duration, *runs.started, *runs.ended.dropna()])  # a live recording's present
        # a start before an end at the same instant: a run that has only just begun still counts
        edges = sorted([(t, 1) for t in runs.started] +
                       [(t, -1) for t in runs.ended.astype(float).fillna(until)], key=lambda e: (e[0], -e[1]))
        t, level = [0.0], [0]
        for when, step in edges:
            t.append(when)
            level.append(level[-1] + step)
        t.append(max(until, t[-1]))
        level.append(level[-1])
        out[RUNNING] = (np.array(t), np.array(level))
    return out


def priority_range(steps: list[int], step: int) -> str:
    """The priorities that kombu's Redis transport puts in the list of `step`: with the default steps 0, 3, 6, 9,
    step 3 holds 3-5, step 0 holds 0-2 and messages sent with no priority, and step 9 holds 9 and (clamped)
    anything above it."""
    steps = sorted(steps)
    i = steps.index(step)
    if i == len(steps) - 1:
        return f"{step} and above"
    top = steps[i + 1] - 1
    text = f"{step}-{top}" if top > step else f"{step}"
    return text + (", none" if i == 0 else "")


def list_series(rec: Recording, queues: list[str] | None = None) -> dict[str, tuple]:
    """The layers of a stacked queue plot on Redis, label -> (t, messages), from the bottom up: for each queue,
    its priority lists in the order workers take from them (the list of priority 0 first)."""
    lists = rec.priority_lists
    if queues is not None:
        lists = lists[lists.queue.isin(queues)]
    if lists.empty:
        return {}
    table = lists.pivot_table(index="t", columns=["queue", "priority"], values="depth", aggfunc="last").fillna(0)
    names = list(dict.fromkeys(lists.queue))
    out = {}
    for queue in names:
        steps = sorted(lists[lists.queue == queue].priority.unique().tolist())
        for step in steps:
            label = f"priority {priority_range(steps, step)}"
            out[label if len(names) == 1 else f"{queue}: {label}"] = (table.index.to_numpy(),
                                                                       table[(queue, step)].to_numpy().astype(int))
    return out


SERIES_STYLE = {UNACKED: {"ls": "--", "color": "tab:purple"}, RUNNING: {"ls": ":", "color": "tab:green", "lw": 2}}
# Stacked priority lists, from the first a worker takes (warm) to the last (cool).
LIST_COLOURS = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac", "#5e3c99", "#999999"]


def queue_depth(rec: Recording, title: str = "Messages waiting in each queue", fast: bool = False,
                unacked: bool = True, running: bool = False, name: str | None = None,
                queues: list[str] | None = None, window: tuple[float, float] | None = None,
                by_priority: bool = False) -> Figure:
    """Messages waiting in each queue (or only in `queues`) over time; with `unacked`, those workers hold
    unacknowledged; with `running`, the runs in progress. `window=(t0, t1)` shows only that stretch of time.
    With `by_priority` (Redis), each queue's priority lists are stacked instead of its one total line: the top
    of the stack is the total."""
    fig, ax = figure(title, "messages" if not running else "messages / runs", fast=fast, name=name)
    ax.set_xlim(*(window or (0, max(rec.duration, 1e-3))))
    series = queue_series(rec, unacked=unacked, running=running, queues=queues)
    if window is not None:
        series = {label: _clip(t, y, *window) for label, (t, y) in series.items()}
    if rec.queues.empty:
        _empty(ax, "queue samples")
        return fig
    stacked = list_series(rec) if by_priority else {}
    if stacked:
        for queue in set(rec.priority_lists.queue):
            series.pop(f"{queue}: waiting", None)  # the stack's top edge is that line
        _stack(ax, fig, stacked)
    for label, (t, y) in series.items():
        ax.step(t, y, where="post", label=label, **SERIES_STYLE.get(label, {}))
    tops = [y.max() for _, y in series.values()]
    if stacked:
        tops.append(np.sum([y for _, y in stacked.values()], axis=0).max())
    count_axis(ax, max(int(max(tops)), 1))
    handles, labels = ax.get_legend_handles_labels()
    layers = len(stacked)  # listed top layer first, as the stack reads from the top
    order = list(range(layers))[::-1] + list(range(layers, len(labels)))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize="small", frameon=False,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _shade_gaps(ax, rec)
    return fig


def _clip(t: np.ndarray, y: np.ndarray, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """A step series cut to [t0, t1]: its value at t0, then its points inside."""
    t, y = np.asarray(t, dtype=float), np.asarray(y)
    before = y[t <= t0]
    inside = (t > t0) & (t <= t1)
    start = before[-1] if len(before) else 0
    return np.concatenate([[t0], t[inside]]), np.concatenate([[start], y[inside]])


def _stack(ax, fig: CourseFigure, stacked: dict[str, tuple]) -> None:
    """Draw the layers as stacked steps (each sample holds until the next), bottom layer first; the figure's
    facts keep each layer's own counts, bottom up."""
    t = next(iter(stacked.values()))[0]
    colours = (LIST_COLOURS * len(stacked))[:len(stacked)]
    ax.stackplot(t, *[y for _, y in stacked.values()], labels=list(stacked), colors=colours, step="post",
                 alpha=0.85, edgecolor="white", linewidth=0.4)
    fig.facts["stacked"] = {label: _steps(np.column_stack([x, y]).astype(float)) for label, (x, y) in stacked.items()}


def count_axis(ax, top: int) -> None:
    """Whole numbers from 0 to `top`, with a little room below 0 so that a line at 0 is not hidden in the
    frame, and above the top so that the highest line is not drawn on it."""
    ax.set_ylim(-0.06 * top, top * 1.12)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


# -- states, memory -----------------------------------------------------------------------------------------
def states(rec: Recording, title: str = "Tasks in each state over time", fast: bool = False,
           name: str | None = None) -> Figure:
    """How many tasks were in each state at each moment, from the events."""
    fig, ax = figure(title, "tasks", fast=fast, name=name)
    changes = rec.state_changes()
    if not changes:
        _empty(ax, "task events")
        return fig
    current: dict[str, str] = {}
    rows = []
    for t, uuid, state in changes:
        current[uuid] = state
        counts = pd.Series(list(current.values())).value_counts()
        rows.append({"t": t, **counts.to_dict()})
    table = pd.DataFrame(rows).fillna(0)
    for state in [s for s in STATE_ORDER if s in table.columns]:
        ax.step(table.t, table[state], where="post", label=state)
    count_axis(ax, int(max(table[[s for s in STATE_ORDER if s in table.columns]].max())))
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def memory(rec: Recording, title: str = "Resident memory of each worker process", fast: bool = False,
           name: str | None = None) -> Figure:
    """One line per pid; a marker where a pid first appears after the start (a recycled or replaced child)."""
    m = rec.memory
    fig, ax = figure(title, "RSS (MiB)", fast=fast, name=name)
    if m.empty:
        _empty(ax, "memory samples")
        return fig
    first_t = m.t.min()
    for (node, pid, role), part in m.groupby(["node", "pid", "role"]):
        line, = ax.plot(part.t, part.rss / 2**20, label=f"{node.split('@')[0]} {role} {pid}")
        if part.t.iloc[0] > first_t:
            ax.plot(part.t.iloc[0], part.rss.iloc[0] / 2**20, marker="v", color=line.get_color(), markersize=9)
    ax.legend(fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(bottom=0)
    ax.margins(x=0.03)
    return fig


def child_lives(rec: Recording, node: str) -> list[dict]:
    """Each pool child of worker `node` as the memory samples saw it: pid, first and last sample (s), its RSS at
    the first sample, at the last and its peak (MiB), and whether it ended before the recording did (no sample in
    its last 0.5 s)."""
    m = rec.memory
    kids = m[(m.node == node) & (m.role == "child") & (m.rss > 0)]  # an exited child not yet reaped reads 0
    end = m.t.max() if len(m) else 0.0
    lives = [{"pid": int(pid), "start": float(part.t.min()), "end": float(part.t.max()),
              "first_mb": round(float(part.sort_values("t").rss.iloc[0]) / 2**20, 1),
              "last_mb": round(float(part.sort_values("t").rss.iloc[-1]) / 2**20, 1),
              "peak_mb": round(float(part.rss.max()) / 2**20, 1), "ended": bool(part.t.max() < end - 0.5)}
             for pid, part in kids.groupby("pid")]
    return sorted(lives, key=lambda life: life["start"])


def child_memory(rec: Recording, nodes: dict[str, str], title: str = "Resident memory of each pool child",
                 bound_mb: float | None = None, name: str | None = None,
                 limits: dict[str, tuple[float, str]] | None = None) -> Figure:
    """One panel per worker (`nodes`: node name -> panel title), one line per pool child, each child's start
    marked with a triangle and its end (replaced or killed) with a cross. `limits` (node name -> (MiB, label)) draws
    a worker's memory limit as a dashed line, labelled, in its panel; (MiB, label, pid): a limit of that child
    alone, drawn over its life only. `facts["children"]` holds each panel's child
    lives, as `child_lives` gives them; `facts["limits"]` each labelled limit."""
    fig = CourseFigure(figsize=(8, 1.9 * len(nodes) + 0.6), layout="constrained", name=name or title)
    axes = fig.subplots(len(nodes), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    fig.suptitle(title)
    m = rec.memory
    fig.facts["children"] = {}
    fig.facts["limits"] = {}
    limits = limits or {}
    for ax, (node, label) in zip(axes, nodes.items()):
        ax.set_title(label, fontsize="small", loc="left")
        ax.set_ylabel("RSS (MiB)")
        kids = m[(m.node == node) & (m.role == "child") & (m.rss > 0)] if len(m) else m
        lives = child_lives(rec, node) if len(m) else []
        fig.facts["children"][label] = lives
        if kids.empty:
            _empty(ax, "memory samples")
            continue
        for life in lives:
            part = kids[kids.pid == life["pid"]]
            line, = ax.plot(part.t, part.rss / 2**20, linewidth=1.5)
            ax.plot(part.t.iloc[0], part.rss.iloc[0] / 2**20, marker="^", color=line.get_color(), markersize=7)
            if life["ended"]:
                ax.plot(part.t.iloc[-1], part.rss.iloc[-1] / 2**20, marker="x", color=line.get_color(),
                        markersize=8, markeredgewidth=2)
        if bound_mb:
            ax.axhline(bound_mb, color="grey", linestyle=":", linewidth=1)
        if node in limits:
            limit_mb, said, *child = limits[node]
            life = next((life for life in lives if child and life["pid"] == child[0]), None)
            if life is None:  # the worker's limit: for every child
                ax.axhline(limit_mb, color="tab:red", linestyle="--", linewidth=1)
                ax.annotate(said, xy=(1, limit_mb), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                            textcoords="offset points", ha="right", va="bottom", fontsize="x-small", color="tab:red")
            else:  # one child's: over its life, so that its successors are not read as bound by it
                part = kids[kids.pid == life["pid"]]
                ax.hlines(limit_mb, part.t.iloc[0], part.t.iloc[-1], color="tab:red", linestyle="--", linewidth=1.5)
                # named in the panel's title line, not beside the line: a child killed within a second leaves a
                # short line, and a label there crossed its successor's curve
                ax.set_title(f"– – {said}", loc="right", fontsize="x-small", color="tab:red")
            fig.facts["limits"][label] = {"mb": limit_mb, "label": said, "child": child[0] if child else None}
        top = max([float(m[(m.node.isin(list(nodes))) & (m.role == "child")].rss.max()) / 2**20, bound_mb or 0,
                   *(limit[0] for limit in limits.values())])
        ax.set_ylim(bottom=0, top=top * 1.15)
        ax.margins(x=0.02)
    axes[-1].set_xlabel(TIME_AXIS)
    handles = [Line2D([], [], marker="^", linestyle="", color="black", label="child started"),
               Line2D([], [], marker="x", linestyle="", color="black", markeredgewidth=2, label="child ended")]
    axes[0].legend(handles=handles, fontsize="x-small", frameon=False, loc="upper left")
    return fig


# -- retries ------------------------------------------------------------------------------------------------
RETRY_AXIS = "seconds since the task's first attempt"


def retries(rec: Recording, title: str = "Attempts of each task", fast: bool = False, task_ids=None,
            name: str | None = None) -> Figure:
    """Each task on its own row (or only `task_ids`), its time axis starting at its first attempt: a dot per
    attempt, coloured by how it ended, the gap between attempts written above. Runs that start so close together
    that their dots would cover one another (a message handed out twice) are one dot marked `×N`."""
    runs = rec.runs
    if task_ids is not None:
        runs = runs[runs.task_id.isin(list(task_ids))]
    rows = list(dict.fromkeys(runs.task_id))
    fig, ax = figure(title, height=1.4 + 0.55 * max(1, len(rows)), fast=fast, name=name)
    ax.set_xlabel(RETRY_AXIS)
    if runs.empty:
        _empty(ax, "task runs")
        return fig
    runs = runs.assign(x=runs.started - runs.groupby("task_id").started.transform("min"))
    span = max(runs.x.max(), 1.0)
    ax.set_xlim(-0.06 * span, span * 1.12)  # room on the right for a "×N" after the last dot
    together = span * 0.03  # a little more than a dot's width on this axis: closer dots would overlap
    names = dict(zip(runs.task_id, runs.name))
    described = {}
    for row, uuid in enumerate(rows):
        part = runs[runs.task_id == uuid].sort_values("x")
        clusters = _clusters(part, together)
        xs = [c["x"] for c in clusters]
        ax.plot(xs, [row] * len(xs), color="lightgray", zorder=1)
        ax.scatter(xs, [row] * len(xs), zorder=2, edgecolor="black", linewidth=0.5, s=50,
                   c=[OUTCOME_COLOURS.get(_worst(c["outcomes"]), "tab:blue") for c in clusters])
        gaps = []
        for a, b in zip(xs[:-1], xs[1:]):
            gaps.append(f"{b - a:.1f}s")
            ax.annotate(gaps[-1], ((a + b) / 2, row), textcoords="offset points", xytext=(0, 6), ha="center",
                        va="bottom", fontsize="small")
        for c in clusters:
            if c["count"] > 1:  # several runs at one instant: say how many
                ax.annotate(f"×{c['count']}", (c["x"], row), textcoords="offset points", xytext=(7, -3),
                            ha="left", va="top", fontsize="small", fontweight="bold")
        label = f"{str(names[uuid]).rsplit('.', 1)[-1]} {uuid[:6]}"
        described[uuid] = {"label": label, "name": names[uuid], "runs": len(part), "gap_labels": gaps,
                           "marks": clusters}
    ax.set_yticks(range(len(rows)), [described[u]["label"] for u in rows])
    ax.set_ylim(-0.6, len(rows) - 0.3)
    outcomes = [o for o in OUTCOME_COLOURS if o in set(runs.outcome)]
    ax.legend(handles=[Patch(color=OUTCOME_COLOURS[o], label=o) for o in outcomes], fontsize="small",
              frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.facts["tasks"] = described
    return fig


def _clusters(part: pd.DataFrame, together: float) -> list[dict]:
    """Runs (sorted by x) grouped while each starts within `together` of the group's first."""
    out: list[dict] = []
    for run in part.itertuples():
        if out and run.x - out[-1]["x"] <= together:
            out[-1]["count"] += 1
            out[-1]["outcomes"].append(run.outcome)
        else:
            out.append({"x": run.x, "count": 1, "outcomes": [run.outcome]})
    return out


def _worst(outcomes: list[str]) -> str:
    return max(outcomes, key=lambda o: OUTCOME_RANK.get(o, 0))


def _shade_gaps(ax, rec: Recording) -> None:
    for start, end in rec.gaps:
        ax.axvspan(start, end if end is not None else rec.duration, color="red", alpha=0.12, lw=0)


# -- what a figure draws, and its layout ------------------------------------------------------------------
def _steps(xy: np.ndarray) -> list[list[float]]:
    """A line's points, keeping only those where its value changes (and the last): a step series in brief."""
    keep = [i for i in range(len(xy)) if i == 0 or i == len(xy) - 1 or xy[i][1] != xy[i - 1][1]]
    return [[float(xy[i][0]), float(xy[i][1])] for i in keep]


def drawn(fig: Figure) -> dict:
    """The labelled lines (as their change points) and bar groups of every axes, by legend label."""
    lines, bars = {}, {}
    for ax in fig.axes:
        for line in ax.lines:
            if not line.get_label().startswith("_"):
                lines[line.get_label()] = _steps(np.asarray(line.get_xydata(), dtype=float))
        for container in ax.containers:
            if not isinstance(container, BarContainer) or not container.patches:
                continue
            # bar() labels the container, hist() its first bar
            label = next((str(x) for x in (container.get_label(), container.patches[0].get_label())
                          if x and not str(x).startswith("_")), None)
            if label is not None:
                bars[label] = [[r.get_x() + r.get_width() / 2, r.get_height()] for r in container]
    return {"lines": lines, "bars": bars}


def _texts(fig: Figure) -> list:
    """Every text drawn: titles, axis labels, tick labels in view, legend entries, annotations."""
    found = list(fig.texts)
    for ax in fig.axes:
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(limits)
            locs = axis.get_majorticklocs()
            for tick, loc in zip(axis.get_major_ticks(len(locs)), locs):
                if lo - 1e-9 * (hi - lo) <= loc <= hi + 1e-9 * (hi - lo):
                    found += [t for t in (tick.label1, tick.label2) if t.get_visible()]
        if ax.get_legend() is not None:
            found += ax.get_legend().get_texts()
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def _inside(box, frame, slack: float) -> bool:
    return (box.x0 >= frame.x0 - slack and box.x1 <= frame.x1 + slack and
            box.y0 >= frame.y0 - slack and box.y1 <= frame.y1 + slack)


def layout_problems(fig: Figure, renderer) -> dict:
    """What a reader would trip on: labels that overlap, texts cut off at the figure's edge, and marks (dots,
    markers, annotations) on or outside the axes' frame, or bars that cross it."""
    texts = _texts(fig)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    overlapping = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if (box_a.x0 < box_b.x1 - 1 and box_b.x0 < box_a.x1 - 1 and
                    box_a.y0 < box_b.y1 - 1 and box_b.y0 < box_a.y1 - 1):
                overlapping.append([a, b])
    cut = [text for text, box in boxes if not _inside(box, fig.bbox, 0.5)]
    outside = []
    for ax in fig.axes:
        frame = ax.bbox
        for t in ax.texts:
            if not _inside(t.get_window_extent(renderer), frame, -1):
                outside.append(f"text {t.get_text()!r}")
        for line in ax.lines:
            if line.get_visible() and line.get_marker() not in (None, "None", "", " "):
                radius = line.get_markersize() * fig.dpi / 72 / 2
                for x, y in line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float)):
                    if not _box_inside(x, y, radius, frame):
                        outside.append(f"marker of {line.get_label()!r} at ({x:.0f}, {y:.0f}) px")
        for coll in ax.collections:
            if isinstance(coll, PathCollection) and len(coll.get_offsets()):
                sizes = coll.get_sizes()
                points = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), dtype=float))
                for k, (x, y) in enumerate(points):
                    radius = np.sqrt(sizes[k % len(sizes)] if len(sizes) else 36) * fig.dpi / 72 / 2
                    if not _box_inside(x, y, radius, frame):
                        outside.append(f"dot at ({x:.0f}, {y:.0f}) px")
            elif not isinstance(coll, PathCollection) and coll.get_visible():
                for path in coll.get_paths():
                    box = path.get_extents(coll.get_transform())
                    if box.width and not _inside(box, frame, 1):
                        outside.append("bar crossing the frame")
        for patch in ax.patches:
            box = patch.get_window_extent(renderer)
            if patch.get_visible() and box.width > 0 and not _inside(box, frame, 1):
                outside.append("bar crossing the frame")
    return {"overlapping_labels": overlapping, "cut_off_labels": cut, "outside_frame": outside,
            "overlapping_dots": _overlapping_dots(fig)}


def _overlapping_dots(fig: Figure) -> int:
    """Pairs of scatter dots that cover one another, so that a reader would count one where there are two."""
    count = 0
    for ax in fig.axes:
        dots = []
        for coll in ax.collections:
            if isinstance(coll, PathCollection) and len(coll.get_offsets()):
                sizes = coll.get_sizes()
                points = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), dtype=float))
                dots += [(x, y, np.sqrt(sizes[k % len(sizes)] if len(sizes) else 36) * fig.dpi / 72 / 2)
                         for k, (x, y) in enumerate(points)]
        for i, (x, y, r) in enumerate(dots):
            count += sum(1 for x2, y2, r2 in dots[i + 1:] if np.hypot(x - x2, y - y2) < 0.9 * (r + r2))
    return count


def _box_inside(x: float, y: float, radius: float, frame) -> bool:
    """A mark of `radius` px centred at (x, y) lies wholly inside the frame, off its edges."""
    return frame.x0 < x - radius and x + radius < frame.x1 and frame.y0 < y - radius and y + radius < frame.y1
