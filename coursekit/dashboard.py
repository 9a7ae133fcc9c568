"""A live dashboard: a daemon thread redraws a plot of the recording into an ipywidgets Image.

Redrawing a whole matplotlib figure costs ~50 ms here, which at 2 Hz is a fifth of a core. The live views below
draw the axes, ticks and labels once into a cached background and, each frame, draw only the data artists on top
of it (blitting), then encode the pixels as PNG: a few milliseconds. The background is redrawn only when the
axes must grow (limits double) or a new queue or lane appears. Frames are drawn only when the recording changed,
the thread stops itself after `duration`, and the Image keeps the last frame, which is saved with the notebook.
"""
from __future__ import annotations

import io
import threading
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection

from . import plots
from .observe import Recorder, Recording

GROW = 2.0  # axes limits double when the data outgrows them: log(n) full redraws in all


def _grown(limit: float, value: float, floor: float) -> float:
    limit = max(limit, floor)
    while value > limit:
        limit *= GROW
    return limit


class LiveView:
    """One figure kept for the whole dashboard; subclasses say what the layout depends on and what to draw.

    The figure is drawn at about the width of a notebook's output area (860 px at 100 dpi), with fixed margins
    sized for its labels and a legend on the right, so the widget shows it at its own size, fonts readable."""

    title, ylabel = "", ""
    size = (8.6, 3.2)  # inches
    margins = {"left": 0.08, "right": 0.74, "bottom": 0.17, "top": 0.88}

    def __init__(self, dpi: int = 100):
        self.fig, self.ax = plots.figure(self.title, self.ylabel, fast=True, name=self.title)
        self.fig.set_size_inches(*self.size)
        self.fig.subplots_adjust(**self.margins)
        self.fig.set_dpi(dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        self.layout_key = None
        self.background = None
        self.full_redraws = 0

    @property
    def pixels(self) -> tuple[int, int]:
        """Width and height of a frame, in pixels."""
        return int(round(self.size[0] * self.fig.dpi)), int(round(self.size[1] * self.fig.dpi))

    def frame(self, rec: Recording) -> bytes:
        data = self.collect(rec)
        key = self.layout(data, rec)
        if key != self.layout_key or self.background is None:
            self.layout_key = key
            self.apply_layout(data, rec)
            self.canvas.draw()  # animated artists are left out of the background
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
            self.full_redraws += 1
        self.canvas.restore_region(self.background)
        for artist in self.artists(data, rec):
            artist.set_animated(True)
            self.ax.draw_artist(artist)
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())).save(out, format="png", compress_level=1)
        return out.getvalue()


class QueueView(LiveView):
    """Messages waiting in each queue, messages the workers hold unacknowledged (a countdown or eta task, a
    prefetched one), and the runs in progress: the three places a task can be."""

    title, ylabel = "Queues and workers (live)", "messages / runs"

    def __init__(self, dpi: int = 100):
        super().__init__(dpi)
        self.lines: dict[str, object] = {}
        self.xmax, self.ymax = 10.0, 4.0

    def collect(self, rec):
        return plots.queue_series(rec, unacked=True, running=True)

    def layout(self, data, rec):
        tmax = max([t[-1] for t, _ in data.values() if len(t)] or [0.0])
        ymax = max([y.max() for _, y in data.values() if len(y)] or [0])
        self.xmax, self.ymax = _grown(self.xmax, tmax, 10.0), _grown(self.ymax, ymax, 4.0)
        return (tuple(data), self.xmax, self.ymax)

    def apply_layout(self, data, rec):
        for label in data:
            if label not in self.lines:
                self.lines[label], = self.ax.step([], [], where="post", label=label, animated=True,
                                                  **plots.SERIES_STYLE.get(label, {}))
        self.ax.set_xlim(0, self.xmax)
        plots.count_axis(self.ax, int(self.ymax))
        if self.lines:
            self.ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    def artists(self, data, rec):
        for label, (t, y) in data.items():
            self.lines[label].set_data(t, y)
        return list(self.lines.values())


class TimelineView(LiveView):
    title = "Task runs on each worker process (live)"

    def __init__(self, dpi: int = 100):
        super().__init__(dpi)
        self.xmax = 10.0

    def collect(self, rec):
        return rec.runs

    def layout(self, runs, rec):
        self.xmax = _grown(self.xmax, rec.duration if not runs.empty else 0.0, 10.0)
        lanes = tuple(sorted(set(zip(runs.node, runs.pid)))) if not runs.empty else ()
        return (lanes, self.xmax)

    def apply_layout(self, runs, rec):
        lanes = self.layout_key[0]
        self.ax.set_yticks(range(len(lanes)), [plots.lane_label(n, p) for n, p in lanes])
        self.ax.set_ylim(-0.6, max(len(lanes), 1) - 0.4)
        self.ax.set_xlim(0, self.xmax)

    def artists(self, runs, rec):
        if runs.empty:
            return []
        bars = plots.timeline_bars(runs, rec.duration, 0.0, self.xmax)
        out = []
        for outcome, part in bars.groupby("outcome"):
            boxes = [[(b.x0, b.y0), (b.x0, b.y0 + b.height), (b.x1, b.y0 + b.height), (b.x1, b.y0)]
                     for b in part.itertuples()]
            out.append(PolyCollection(boxes, facecolors=plots.OUTCOME_COLOURS.get(outcome, "tab:blue"),
                                      edgecolors="black", linewidths=0.5,
                                      zorder=2 + plots.OUTCOME_RANK.get(outcome, 0)))
        out.sort(key=lambda artist: artist.get_zorder())
        for artist in out:  # drawn by hand, never added to the axes: nothing to remove next frame
            artist.set_figure(self.fig)
            artist.axes = self.ax
            artist.set_transform(self.ax.transData)
        return out


LIVE_VIEWS = {plots.queue_depth: QueueView, plots.timeline: TimelineView}


class Dashboard:
    def __init__(self, recorder: Recorder, draw=plots.timeline, hz: float = 2.0, duration: float = 60.0,
                 dpi: int = 100):
        import ipywidgets as widgets

        self.recorder, self.draw, self.period, self.duration, self.dpi = recorder, draw, 1.0 / hz, duration, dpi
        view = LIVE_VIEWS.get(draw)
        self.view = view(dpi) if view else None  # other plots: redrawn whole, more slowly
        self.frames = 0
        self.cpu_s = 0.0
        """CPU seconds the dashboard's own thread has used (drawing and encoding)."""
        width = self.view.pixels[0] if self.view else int(8 * dpi)
        # As wide as the output area allows, never wider than the frame, and always at the frame's aspect ratio:
        # a bare Image in a VBox is stretched sideways to the box's width while its height stays.
        self.image = widgets.Image(format="png", layout=widgets.Layout(
            width="100%", max_width=f"{width}px", height="auto", object_fit="contain"))
        self.status = widgets.Label("stopped")
        start, stop = widgets.Button(description="start"), widgets.Button(description="stop")
        start.on_click(lambda _: self.start())
        stop.on_click(lambda _: self.stop())
        self.widget = widgets.VBox([widgets.HBox([start, stop, self.status]), self.image])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Dashboard":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="coursekit-dashboard")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.render()  # the final frame stays in the widget, and so in the saved notebook

    def render(self) -> None:
        rec = self.recorder.recording
        if self.view is not None:
            self.image.value = self.view.frame(rec)
        else:
            self.image.value = plots.png(self.draw(rec, fast=True), self.dpi)
        self.frames += 1

    def _run(self) -> None:
        begun = time.monotonic()
        ends = begun + self.duration
        last = None
        self.status.value = f"live: redrawn when something changes; stops by itself after {self.duration:.0f} s"
        while not self._stop.is_set() and time.monotonic() < ends:
            tick = time.monotonic()
            rec = self.recorder.recording
            seen = (len(rec.events), len(rec.queue_samples), len(rec.memory_samples))
            if seen != last:  # nothing new: the last frame is still right
                cpu = time.thread_time()
                self.render()
                self.cpu_s += time.thread_time() - cpu
                last = seen
            self._stop.wait(max(0.0, self.period - (time.monotonic() - tick)))
        how = "stopped" if self._stop.is_set() else "stopped by itself"
        self.status.value = f"{how} after {time.monotonic() - begun:.1f} s ({self.frames} redraws); the picture " \
                            "is the last moment it saw"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def live(recorder: Recorder, **options) -> Dashboard:
    """Show a live plot of `recorder` in the notebook: `ck.live(rec, draw=plots.queue_depth)`."""
    return Dashboard(recorder, **options).start()
