"""Chapter 05: what Celery does with logging, read from a real worker's streams."""
from __future__ import annotations

import re
import uuid

from ...labs.drill import ROOT_MARK
from ..lab import DrillLab

LEVEL = r"(DEBUG|INFO|WARNING|ERROR|CRITICAL)/[\w-]+\] "


def _line_with(lab: DrillLab, worker, text: str, stream: str | None = None) -> str | None:
    return lab.wait_for(lambda: next((ln for ln in worker.logs(stream=stream).splitlines() if text in ln), None))


def print_level(lab: DrillLab) -> str:
    w = lab.worker("plain")
    text = f"drill-print-{uuid.uuid4().hex[:8]}"
    lab.tasks.say.apply_async((text,), queue=lab.queue("plain")).get(timeout=8)
    line = _line_with(lab, w, text) or ""
    found = re.search(LEVEL + re.escape(text), line)
    return found.group(1) if found else f"no level: {line!r}"


def record_stream(lab: DrillLab) -> str:
    w = lab.worker("plain")
    text = f"drill-log-{uuid.uuid4().hex[:8]}"
    lab.tasks.log_line.apply_async((text,), queue=lab.queue("plain")).get(timeout=8)
    _line_with(lab, w, text)
    return " and ".join(s for s in ("stdout", "stderr") if text in w.logs(stream=s)) or "neither"


def root_handler_fate(lab: DrillLab) -> str:
    lab.worker("plain")
    names = lab.tasks.root_handlers.apply_async(queue=lab.queue("plain")).get(timeout=8)
    return "kept" if ROOT_MARK in names else "removed"


def after_setup_with_receiver(lab: DrillLab) -> str:
    """A worker whose module connects a `setup_logging` receiver (labs/drill_logging.py): did Celery still send
    `after_setup_logger`?"""
    from ...labs import drill_logging

    w = lab.fresh("plain", queue=lab.private_queue(), app=drill_logging.__name__)
    try:
        receiver = _line_with(lab, w, drill_logging.SETUP_MARK)
        after = drill_logging.AFTER_MARK in w.logs()
    finally:
        w.kill()
    if not receiver:
        return "the receiver never ran"
    return "yes" if after else "no"
