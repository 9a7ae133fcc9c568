"""Chapter 09's picture of a burst on several pools: one band per worker, one line per lane (a process, and the thread
or greenlet in it that ran the task), drawn from what each task reported about itself (`coursekit.labs.pools`).

A burst is {worker name: {"sent": Unix time of its first message, "values": the tasks' return values, "ended":
the last end, and optionally "then_value": one more call sent behind the burst}}. `lanes()` draws bursts side by
side; `summary()` is the table of the same numbers, with each worker's memory from a recording; `cpu()` draws the CPU
use the recorder sampled during each worker's burst.
"""
from __future__ import annotations

import pandas as pd

from .observe.frames import max_overlap
from .plots import CourseFigure

BAND = 0.8
"""Height of one worker's band on the y axis (bands are 1 apart)."""


def _lanes(values: list[dict]) -> list[tuple[int, int]]:
    """Each (pid, thread id) that ran a task, in order of first start."""
    seen: dict[tuple[int, int], float] = {}
    for v in sorted(values, key=lambda v: v["started"]):
        seen.setdefault((v["pid"], v["lane"]), v["started"])
    return list(seen)


def at_once(values: list[dict]) -> int:
    """The most of these tasks running at one instant, by their own start and end."""
    runs = pd.DataFrame([{"started": v["started"], "ended": v["ended"]} for v in values], columns=["started", "ended"])
    return max_overlap(runs, max((v["ended"] for v in values), default=0.0))


def burst_facts(part: dict) -> dict:
    """What one worker's burst shows: its wall time from the first send to the last end, lanes, processes, the most
    tasks at once, and the CPU its tasks got together (their CPU times over the wall time), when they report it."""
    values = part["values"]
    wall = part["ended"] - part["sent"]
    out = {"wall_s": round(wall, 3), "tasks": len(values), "lanes": len(_lanes(values)),
           "processes": len({v["pid"] for v in values}), "at_once": at_once(values),
           "pairs_in_two_processes": _parallel_pairs(values)}
    if all("cpu" in v for v in values):
        busy = max(v["ended"] for v in values) - min(v["started"] for v in values)
        out["cpu_s"] = round(sum(v["cpu"] for v in values), 3)
        out["cores_used"] = round(out["cpu_s"] / busy, 2) if busy > 0 else None
    if "then_value" in part:
        then = part["then_value"]
        out["then_s"] = round(then["ended"] - part["sent"], 3)
    return out


def _parallel_pairs(values: list[dict]) -> int:
    """Pairs of tasks that ran at the same time in two different processes."""
    count = 0
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            if a["pid"] != b["pid"] and a["started"] < b["ended"] and b["started"] < a["ended"]:
                count += 1
    return count


def lanes(bursts: dict[str, dict[str, dict]], labels: dict[str, str], name: str = "pools") -> CourseFigure:
    """One panel per burst (its title the key), one band per worker (labelled from `labels` with the burst's wall
    time), one horizontal line per task in its lane; a call sent behind the burst in orange."""
    names = list(labels)
    fig = CourseFigure(figsize=(11, 4.2), layout="constrained", name=name)
    axes = fig.subplots(1, len(bursts), sharey=True)
    axes = list(axes) if len(bursts) > 1 else [axes]
    fig.facts = {"bursts": {}}
    for ax, (title, burst) in zip(axes, bursts.items()):
        longest = max(max([p["ended"]] + ([p["then_value"]["ended"]] if "then_value" in p else [])) - p["sent"]
                      for p in burst.values())
        shown = {}
        for band, worker in enumerate(names):
            part = burst[worker]
            values = part["values"]
            order = _lanes(values + ([part["then_value"]] if "then_value" in part else []))
            step = BAND / max(len(order), 1)
            for v in values:
                y = band + order.index((v["pid"], v["lane"])) * step + step / 2 - BAND / 2
                ax.hlines(y, v["started"] - part["sent"], v["ended"] - part["sent"], color="tab:blue",
                          linewidth=max(0.8, min(4.0, 60 * step)))
            if "then_value" in part:
                v = part["then_value"]
                y = band + order.index((v["pid"], v["lane"])) * step + step / 2 - BAND / 2
                ax.hlines(y, v["started"] - part["sent"], v["ended"] - part["sent"], color="tab:orange",
                          linewidth=max(1.5, min(4.0, 60 * step)))
            shown[worker] = burst_facts(part)
        fig.facts["bursts"][title] = shown
        ax.set_title(title, fontsize="medium")
        ax.set_xlim(-0.04 * longest, longest * 1.2)
        ax.set_xlabel("seconds since the worker's first message")
        for band, worker in enumerate(names):
            ends = [burst[worker]["ended"]] + ([burst[worker]["then_value"]["ended"]]
                                                if "then_value" in burst[worker] else [])
            ax.text(max(ends) - burst[worker]["sent"] + 0.02 * longest, band, f"{shown[worker]['wall_s']:.2f} s",
                    ha="left", va="center", fontsize="small", color="dimgray")
    axes[0].set_yticks(range(len(names)), [labels[w] for w in names])
    axes[0].set_ylim(len(names) - 0.4, -0.6)
    axes[0].set_ylabel("worker (one line per lane)")
    if any("then_value" in p for b in bursts.values() for p in b.values()):
        from matplotlib.lines import Line2D

        axes[-1].legend(handles=[Line2D([], [], color="tab:blue", label="the burst"),
                                 Line2D([], [], color="tab:orange", label="one fetch sent behind it")],
                        loc="lower right", fontsize="small", frameon=False)
    return fig


def summary(io: dict, cpu: dict, recording, workers: dict) -> pd.DataFrame:
    """One row per worker: the two bursts' numbers (burst_facts), and its processes' summed RSS at the recording's
    last memory sample."""
    mem = recording.memory
    rows = []
    for name, worker in workers.items():
        a, b = burst_facts(io[name]), burst_facts(cpu[name])
        mine = mem[mem.node == worker.nodename]
        last = mine[mine.t == mine.t.max()] if len(mine) else mine
        rows.append({"worker": name, "fetches: wall (s)": a["wall_s"], "fetches: at once": a["at_once"],
                     "crunches: wall (s)": b["wall_s"], "crunches: at once": b["at_once"],
                     "crunches: processes": b["processes"], "CPU cores used": b.get("cores_used"),
                     "processes": int(last.pid.nunique()) if len(last) else None,
                     "RSS, all its processes (MiB)": round(float(last.rss.sum()) / (1 << 20)) if len(last) else None})
    return pd.DataFrame(rows)


def memory(recording, workers: dict, labels: dict[str, str], name: str = "pool memory") -> CourseFigure:
    """One horizontal bar per worker, stacked from its processes' RSS at the recording's last memory sample: the
    main process first, then each pool child."""
    mem = recording.memory
    fig = CourseFigure(figsize=(8, 2.6), layout="constrained", name=name)
    ax = fig.add_subplot()
    names = list(workers)
    totals = {}
    for band, worker in enumerate(names):
        mine = mem[mem.node == workers[worker].nodename]
        last = mine[mine.t == mine.t.max()].sort_values("role", key=lambda r: r != "main")
        left = 0.0
        for row in last.itertuples():
            mib = float(row.rss) / (1 << 20)
            ax.barh(band, mib, left=left, height=0.6, color="tab:gray" if row.role == "main" else "tab:blue",
                    edgecolor="white", label="_")
            left += mib
        totals[worker] = {"processes": int(len(last)), "mib": round(left)}
        ax.text(left + 4, band, f"{round(left)} MiB, {len(last)} process{'es' if len(last) > 1 else ''}",
                va="center", fontsize="small", color="dimgray")
    top = max(t["mib"] for t in totals.values())
    ax.set_xlim(0, top * 1.45)
    ax.set_ylim(len(names) - 0.4, -0.6)
    ax.set_yticks(range(len(names)), [labels[w] for w in names])
    ax.set_xlabel("resident memory (MiB): grey the main process, blue each pool child")
    ax.set_title("What each worker costs in memory, as the recorder sampled it")
    fig.facts = {"workers": totals}
    return fig


WINDOW = 4
"""Samples (0.1 s apart in the lesson) over which `cpu()` also gives a worker's CPU use: one sample alone can be
off by a clock tick (10 ms of CPU) or by a sampler thread the OS paused between reading and stamping it."""


def cpu_during(recording, node: str, part: dict) -> dict:
    """What the recorder sampled of worker `node`'s CPU while its burst `part` ran: `samples` ([t, cores], t in
    seconds since the burst's first message; each value covers the time since the sample before), `peak` (the
    highest sample), `peak_window` (the highest over WINDOW samples in a row), `sampled_s` (CPU seconds of every
    sample that overlaps the burst) and `reported_s` (the CPU time the tasks reported, when they do)."""
    frame = recording.cpu
    mine = frame[frame.node == node].sort_values("t").reset_index(drop=True)
    start = part["sent"] - recording.started_at
    end = max(v["ended"] for v in part["values"]) - recording.started_at
    before = mine.t.shift(1).fillna(mine.t - 0.1)
    during = mine[(mine.t > start) & (before < end)]
    window = (mine.cpu_s.rolling(WINDOW).sum() / (mine.t - mine.t.shift(WINDOW)))[during.index]
    out = {"samples": [[round(t - start, 3), c] for t, c in zip(during.t, during.cores)],
           "peak": float(during.cores.max()) if len(during) else None,
           "peak_window": round(float(window.max()), 3) if window.notna().any() else None,
           "sampled_s": round(float(during.cpu_s.sum()), 3)}
    if all("cpu" in v for v in part["values"]):
        out["reported_s"] = round(sum(v["cpu"] for v in part["values"]), 3)
    return out


def cpu(recording, burst: dict[str, dict], workers: dict, labels: dict[str, str],
        name: str = "pool cpu") -> CourseFigure:
    """One panel per worker: its CPU use in cores (1.0 = one core busy), as the recorder sampled it while its part
    of `burst` ran, against seconds since its first message; a dashed line at one core."""
    names = list(labels)
    fig = CourseFigure(figsize=(11, 2.8), layout="constrained", name=name)
    axes = fig.subplots(1, len(names), sharey=True)
    axes = list(axes) if len(names) > 1 else [axes]
    fig.facts = {"workers": {}}
    longest = max(max(v["ended"] for v in burst[w]["values"]) - burst[w]["sent"] for w in names)
    top = 1.0
    for ax, worker in zip(axes, names):
        seen = cpu_during(recording, workers[worker].nodename, burst[worker])
        fig.facts["workers"][worker] = seen
        xs = [0.0] + [t for t, _ in seen["samples"]]
        ys = [0.0] + [c for _, c in seen["samples"]]
        ax.step(xs, ys, where="pre", color="tab:blue")  # a sample's value covers the time since the one before
        ax.axhline(1.0, color="dimgray", linestyle="--", linewidth=1)
        ax.set_title(labels[worker], fontsize="medium")
        ax.set_xlim(0, longest * 1.15 + 0.2)
        ax.set_xlabel("seconds since its first crunch")
        text = f"{seen['sampled_s']:.2f} s of CPU sampled"
        if "reported_s" in seen:
            text += f"\n{seen['reported_s']:.2f} s reported"
        ax.text(0.97, 0.95, text, transform=ax.transAxes, ha="right", va="top", fontsize="x-small",
                color="dimgray")
        top = max([top] + ys)
    axes[0].set_ylim(0, max(2.3, top * 1.1))
    axes[0].set_ylabel("CPU use (cores)")
    # labelled in the last panel, at its right: a single-process pool's line stays under it there
    axes[-1].text(0.98, 1.03, "one core", transform=axes[-1].get_yaxis_transform(), fontsize="x-small",
                  color="dimgray", ha="right", va="bottom")
    fig.suptitle("CPU use of each worker during its computing burst, sampled by the recorder every 0.1 s",
                 fontsize="medium")
    return fig


def limits(table: pd.DataFrame, soft: float, hard: float, name: str = "pool limits") -> CourseFigure:
    """One bar per worker from 0 to when `stuck` ended, red for FAILURE, green for SUCCESS, with the task's soft and
    hard limits as dashed lines; `table` has the columns worker, state, result, ended after (s)."""
    fig = CourseFigure(figsize=(8, 2.6), layout="constrained", name=name)
    ax = fig.add_subplot()
    longest = float(table["ended after (s)"].max())
    for band, row in enumerate(table.to_dict("records")):
        ended = row["ended after (s)"]
        ax.barh(band, ended, height=0.55, color="tab:red" if row["state"] == "FAILURE" else "tab:green", label="_")
        ax.text(ended + 0.05, band, f"{row['state']}: {row['result']}", va="center", fontsize="small")
    for at, what, y, va in ((soft, "soft_time_limit", -0.55, "top"), (hard, "time_limit", len(table) - 0.45, "bottom")):
        ax.axvline(at, color="black", linestyle="--", linewidth=1)
        ax.text(at + 0.03, y, f"{what}={at:g}", fontsize="x-small", va=va)
    ax.set_xlim(0, longest * 1.75)
    ax.set_ylim(len(table) - 0.4, -0.6)
    ax.set_yticks(range(len(table)), list(table.worker))
    ax.set_xlabel("seconds after stuck(2.5) was sent to all four")
    ax.set_title("The same stuck task on each pool: who stopped it, and when")
    return fig
