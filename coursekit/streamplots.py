"""The logging chapter's figure: for each logging set-up, where each kind of line a task writes went (stream or file,
and format), drawn as a grid from the worker's parsed output (`loglines`)."""
from __future__ import annotations

import pandas as pd
from matplotlib.patches import Patch, Rectangle

from .plots import CourseFigure

PLACE_COLOURS = {"stderr": "#f4b183", "stdout": "#a9d18e", "file": "#b4a7d6", "stdout + stderr": "#ffe699",
                 "nowhere": "#d9d9d9"}


def place_of(where: str) -> str:
    """The colour key of a `loglines.where` text: which streams it names."""
    if where == "nowhere":
        return "nowhere"
    streams = sorted({part.split(" (")[0] for part in where.split(" + ")})
    return " + ".join(sorted(streams, key=["stdout", "stderr", "file"].index))


def short(where: str) -> str:
    """'stderr (celery, WARNING)' -> 'stderr: celery WARNING', each place on a line of its own."""
    return "\n".join(part.replace(" (", ": ").replace(", ", " ").rstrip(")") for part in where.split(" + "))


def stream_map(where: pd.DataFrame, title: str, name: str | None = None) -> CourseFigure:
    """`where`: one row per set-up, one column per kind of line, each cell a `loglines.where` text."""
    rows, cols = list(where.index), list(where.columns)
    fig = CourseFigure(figsize=(9, 0.75 + 0.62 * len(rows)), layout="constrained", name=name)
    ax = fig.add_subplot()
    ax.set_title(title)
    for i, setup in enumerate(rows):
        for j, kind in enumerate(cols):
            text = where.loc[setup, kind]
            ax.add_patch(Rectangle((j - 0.48, i - 0.45), 0.96, 0.9, facecolor=PLACE_COLOURS[place_of(text)],
                                   edgecolor="white"))
            ax.text(j, i, short(text), ha="center", va="center", fontsize="small")
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xticks(range(len(cols)), cols)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    used = [p for p in PLACE_COLOURS if any(place_of(t) == p for t in where.to_numpy().ravel())]
    ax.legend(handles=[Patch(color=PLACE_COLOURS[p], label=p) for p in used], loc="upper center",
              bbox_to_anchor=(0.5, -0.02), ncol=len(used), fontsize="small", frameon=False)
    fig.facts.update(cells={setup: {kind: where.loc[setup, kind] for kind in cols} for setup in rows})
    return fig
