"""A live dashboard: a daemon thread redraws one of the recorder's plots into an ipywidgets Image.

Agg figures only (no pyplot state), a bounded lifetime, and a redraw only when the recording has changed, so it
never hangs a headless run and stays cheap. The Image keeps its last frame, which is saved with the notebook.
"""
from __future__ import annotations

import threading
import time

from . import plots
from .observe import Recorder


class Dashboard:
    def __init__(self, recorder: Recorder, draw=plots.timeline, hz: float = 2.0, duration: float = 60.0,
                 dpi: int = 72):
        import ipywidgets as widgets

        self.recorder, self.draw, self.period, self.duration, self.dpi = recorder, draw, 1.0 / hz, duration, dpi
        self.frames = 0
        self.cpu_s = 0.0
        """CPU seconds the dashboard's own thread has used (drawing and encoding)."""
        self.image = widgets.Image(format="png")
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
        fig = self.draw(self.recorder.recording)
        self.image.value = plots.png(fig, self.dpi)
        self.frames += 1

    def _run(self) -> None:
        ends = time.monotonic() + self.duration
        last = None
        self.status.value = f"live, stops by itself after {self.duration:.0f} s"
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
        self.status.value = f"stopped after {self.frames} frames"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def live(recorder: Recorder, **options) -> Dashboard:
    """Show a live plot of `recorder` in the notebook: `ck.live(rec, draw=plots.queue_depth)`."""
    return Dashboard(recorder, **options).start()
