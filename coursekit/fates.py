"""Figures of chapter 06: what became of one task per experiment after a kill, and what a batch lost.

`fates` draws one row per experiment: the runs of its task (from the recorder's events, hatched when the same id ran
again), a cross where the lesson killed a process, and the state the result backend holds at the end. `charged`
draws the ledger's charges over time for each batch, with the kills marked. Both carry their facts (plots.py)."""
from __future__ import annotations

import pandas as pd
from matplotlib.patches import Patch

from .observe import Recording
from .plots import OUTCOME_COLOURS, OUTCOME_RANK, figure


def fates(rec: Recording, rows: list[dict], title: str, name: str | None = None):
    """`rows`: dicts with `label` (the experiment), `task_id`, `kill` (Unix time of the SIGKILL, or None) and `state`
    (what the backend holds at the end). Time is seconds since the recording started. A run with no end event was
    killed: it is drawn LOST, up to the kill (or to the next run of the task)."""
    fig, ax = figure(title, height=1.2 + 0.55 * len(rows), width=9, name=name)
    runs = rec.runs
    end = max([rec.duration, *runs.started.dropna(), *runs.ended.dropna()])
    drawn_rows = []
    for y, row in enumerate(reversed(rows)):
        mine = runs[runs.task_id == row["task_id"]].sort_values("started")
        kill = None if row.get("kill") is None else row["kill"] - rec.started_at
        starts = list(mine.started)
        bars = []
        for i, run in enumerate(mine.itertuples()):
            stop, outcome = run.ended, run.outcome
            if pd.isna(stop):  # no end event: its process was killed (LOST), or it still runs
                later = starts[i + 1] if i + 1 < len(starts) else None
                if kill is not None and kill >= run.started and (later is None or kill <= later):
                    stop, outcome = kill, "LOST"
                elif later is not None:
                    stop, outcome = later, "LOST"
                else:
                    stop = end
            again = run.kind != "first"
            ax.broken_barh([(run.started, max(stop - run.started, end * 0.006))], (y - 0.3, 0.6),
                           facecolors=OUTCOME_COLOURS.get(outcome, "tab:blue"), edgecolor="black",
                           linewidth=0.5, hatch="//" if again else None, zorder=2 + OUTCOME_RANK.get(outcome, 0))
            bars.append({"outcome": outcome, "kind": run.kind, "x0": float(run.started), "x1": float(stop),
                         "pid": int(run.pid) if pd.notna(run.pid) else None})
        if kill is not None:
            ax.plot([kill], [y], marker="X", color="black", markeredgecolor="white", markersize=10, zorder=20,
                    linestyle="none")
        drawn_rows.append({"label": row["label"], "state": row["state"], "kill": kill, "runs": bars})
    ax.set_yticks(range(len(rows)), [f"{r['label']}\n→ {r['state']}" for r in reversed(rows)], fontsize="small")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, end * 1.02)
    present = {b["outcome"] for r in drawn_rows for b in r["runs"]}
    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLOURS.items() if o in present]
    if any(b["kind"] != "first" for r in drawn_rows for b in r["runs"]):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="same id again"))
    handles.append(ax.plot([], [], marker="X", color="black", markeredgecolor="white", linestyle="none",
                           label="SIGKILL")[0])
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.facts.update(rows=list(reversed(drawn_rows)))
    return fig


def charged(batches: dict[str, pd.DataFrame], kills: dict[str, list[float]], began: dict[str, float],
            total: int, title: str, name: str | None = None):
    """Charges recorded in each batch's ledger (`batches`: label -> Ledger.frame()), counted over time since that
    batch began; a dotted line where the lab killed something, and the batch's size."""
    fig, ax = figure(title, ylabel="payments charged (distinct)", height=3.6, name=name)
    colours = ["tab:red", "tab:green", "tab:blue"]
    series = {}
    for (label, frame), colour in zip(batches.items(), colours):
        first = frame.drop_duplicates("key").sort_values("at") if len(frame) else frame
        t = (first["at"] - began[label]).tolist() if len(first) else []
        ax.step([0.0, *t], list(range(len(t) + 1)), where="post", color=colour, label=label)
        for k in kills.get(label, []):
            ax.axvline(k - began[label], color=colour, linestyle=":", linewidth=1)
        series[label] = {"final": len(t), "kills": [k - began[label] for k in kills.get(label, [])]}
    ax.axhline(total, color="gray", linewidth=0.8, linestyle="--", label=f"all {total}")
    ax.set_ylim(0, total * 1.12)
    ax.set_xlabel("seconds since its run began (the runs came one after the other)")  # not the recording's clock
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.facts.update(batches=series, total=total)
    return fig
