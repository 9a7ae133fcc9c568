"""Figures drawn from a Recording's DataFrames, with matplotlib's object API (no pyplot state, any backend).

Each function returns a `Figure`; in a notebook `display(fig)` shows it, `fig.savefig(...)` writes it.
"""
from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .observe import Recording

OUTCOME_COLOURS = {"SUCCESS": "tab:green", "FAILURE": "tab:red", "RETRY": "tab:orange", "LOST": "black",
                   "RUNNING": "tab:gray"}
STATE_ORDER = ["PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"]


class CourseFigure(Figure):
    """A Figure that renders itself as PNG in a notebook, whether or not pyplot was ever imported."""

    def _repr_png_(self) -> bytes:
        return png(self)


def png(fig: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach an Agg canvas: savefig then needs no pyplot backend
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


def figure(title: str, ylabel: str = "", width: float = 8, height: float = 3,
            fast: bool = False) -> tuple[Figure, object]:
    """A figure with one axes, titled, its x axis in seconds since the recording started.

    `fast` (live dashboards) uses fixed margins: constrained layout draws the figure twice to place labels.
    """
    fig = CourseFigure(figsize=(width, height), layout=None if fast else "constrained")
    if fast:
        fig.subplots_adjust(left=0.17, right=0.79, bottom=0.2, top=0.86)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("seconds since the recording started")
    ax.set_ylabel(ylabel)
    return fig, ax


def lane_label(node: str, pid: int) -> str:
    """'w1 pid 1234' for node 'w1-<kernel pid>@host': the worker's short name and the process."""
    return f"{node.split('@')[0].rsplit('-', 1)[0]} pid {pid}"


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes, color="gray")


def timeline(rec: Recording, title: str = "Which process ran which task, when", fast: bool = False) -> Figure:
    """One lane per worker process, one bar per run; hatched bars are retries and redeliveries."""
    runs = rec.runs
    fig, ax = figure(title, height=1.2 + 0.45 * max(1, runs[["node", "pid"]].drop_duplicates().shape[0]),
                      fast=fast)
    if runs.empty:
        _empty(ax, "task runs")
        return fig
    lanes = runs[["node", "pid"]].drop_duplicates().sort_values(["node", "pid"]).reset_index(drop=True)
    lane_of = {(r.node, r.pid): i for i, r in lanes.iterrows()}
    span = max(rec.duration, 1e-3)
    runs = runs.assign(lane=[lane_of[(n, p)] for n, p in zip(runs.node, runs.pid)],
                       end=runs.ended.astype(float).fillna(rec.duration), again=runs.kind != "first")
    # a 4 ms task is narrower than a pixel over a minute-long recording: keep every run visible
    runs["width"] = (runs.end - runs.started).clip(lower=span * 0.004)
    # one collection per lane and outcome, not one bar per run: thousands of runs stay cheap to draw
    for (lane, outcome, again), part in runs.groupby(["lane", "outcome", "again"]):
        ax.broken_barh(list(zip(part.started, part.width)), (lane - 0.3, 0.6),
                       facecolors=OUTCOME_COLOURS.get(outcome, "tab:blue"), edgecolor="black", linewidth=0.5,
                       hatch="//" if again else None)
    ax.set_yticks(range(len(lanes)), [lane_label(n, p) for n, p in lanes.itertuples(index=False)])
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlim(0, span)  # the same time axis as the queue plot of the same recording
    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLOURS.items() if o in set(runs.outcome)]
    if any(runs.kind != "first"):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="retry/redelivery"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    _shade_gaps(ax, rec)
    return fig


def queue_depth(rec: Recording, title: str = "Messages waiting in each queue", fast: bool = False) -> Figure:
    q = rec.queues
    fig, ax = figure(title, "messages", fast=fast)
    ax.set_xlim(0, max(rec.duration, 1e-3))
    if q.empty:
        _empty(ax, "queue samples")
        return fig
    for name, part in q.groupby("queue"):
        ax.step(part.t, part.depth, where="post", label=f"{name} (waiting)")
    unacked = q.drop_duplicates("t").dropna(subset=["unacked"])
    if not unacked.empty and unacked.unacked.max() > 0:
        ax.step(unacked.t, unacked.unacked, where="post", ls="--", color="gray", label="unacked (held by workers)")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small", frameon=False)
    _shade_gaps(ax, rec)
    return fig


def states(rec: Recording, title: str = "Tasks in each state over time", fast: bool = False) -> Figure:
    """How many tasks were in each state at each moment, from the events."""
    fig, ax = figure(title, "tasks", fast=fast)
    from .observe import STATE_AFTER, EventType

    changes = [(e["t"], e["uuid"], STATE_AFTER[EventType(e["type"])]) for e in rec.events
               if e.get("uuid") and e["type"] in STATE_AFTER.keys()]
    if not changes:
        _empty(ax, "task events")
        return fig
    current: dict[str, str] = {}
    rows = []
    for t, uuid, state in sorted(changes, key=lambda c: c[0]):
        current[uuid] = state
        counts = pd.Series(list(current.values())).value_counts()
        rows.append({"t": t, **counts.to_dict()})
    table = pd.DataFrame(rows).fillna(0)
    for state in [s for s in STATE_ORDER if s in table.columns]:
        ax.step(table.t, table[state], where="post", label=state)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def memory(rec: Recording, title: str = "Resident memory of each worker process", fast: bool = False) -> Figure:
    """One line per pid; a marker where a pid first appears after the start (a recycled or replaced child)."""
    m = rec.memory
    fig, ax = figure(title, "RSS (MiB)", fast=fast)
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
    return fig


def retries(rec: Recording, title: str = "Attempts of each task over time", fast: bool = False,
            task_ids=None) -> Figure:
    """Each task on its own row (or only `task_ids`); a dot per attempt, coloured by how it ended, gaps labelled."""
    runs = rec.runs
    if task_ids is not None:
        runs = runs[runs.task_id.isin(list(task_ids))]
    fig, ax = figure(title, height=1.2 + 0.4 * max(1, runs.task_id.nunique() if not runs.empty else 1), fast=fast)
    if runs.empty:
        _empty(ax, "task runs")
        return fig
    order = list(dict.fromkeys(runs.task_id))
    for row, uuid in enumerate(order):
        part = runs[runs.task_id == uuid]
        ax.plot(part.started, [row] * len(part), color="lightgray", zorder=1)
        ax.scatter(part.started, [row] * len(part), c=[OUTCOME_COLOURS.get(o, "tab:blue") for o in part.outcome],
                   zorder=2, edgecolor="black", linewidth=0.5)
        for a, b in zip(part.started.iloc[:-1], part.started.iloc[1:]):
            if b - a >= 0.05:  # copies started together (redeliveries) need no "0.0s" label
                ax.annotate(f"{b - a:.1f}s", ((a + b) / 2, row), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize="x-small")
        together = part.groupby(part.started.round(1)).size()
        for at, count in together[together > 1].items():  # several runs at one instant: say how many
            ax.annotate(f"×{count}", (at, row), textcoords="offset points", xytext=(6, -10), fontsize="small",
                        fontweight="bold")
    names = dict(zip(runs.task_id, runs.name))
    ax.set_yticks(range(len(order)), [f"{str(names[u]).rsplit('.', 1)[-1]} {u[:6]}" for u in order])
    outcomes = [o for o in OUTCOME_COLOURS if o in set(runs.outcome)]
    ax.legend(handles=[Patch(color=OUTCOME_COLOURS[o], label=o) for o in outcomes], fontsize="small",
              frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(-0.6, len(order) - 0.4)
    return fig


def _shade_gaps(ax, rec: Recording) -> None:
    for start, end in rec.gaps:
        ax.axvspan(start, end if end is not None else rec.duration, color="red", alpha=0.12, lw=0)
