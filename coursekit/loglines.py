"""A worker's output, line by line, as a DataFrame: which stream (or file) each line went to, in which format, and
which task wrote it. The logging chapter's lesson and checks read the streams with this, never by eye.

A line is one of three formats:
- `celery`: Celery's own, `[2026-01-31 12:00:00,000: INFO/ForkPoolWorker-1] message` (`worker_log_format`), and
  for a task logger `... ] proj.tasks.add[<task id>]: message` (`worker_task_log_format`);
- `json`: one JSON object (a log shipper's format), its fields read as they are;
- `raw`: anything else (the banner, a print that no one redirected, a handler's format of its own).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

COLUMNS = ["stream", "line", "format", "level", "process", "pid", "logger", "task_name", "task_id", "message", "text"]

CELERY_LINE = re.compile(r"^\[(?P<time>\d{4}-\d\d-\d\d [\d:,]+): (?P<level>[A-Z]+)/(?P<process>[^\]]+)\] "
                         r"(?P<message>.*)$")
TASK_PART = re.compile(r"^(?P<task_name>[^\s\[\]]+)\[(?P<task_id>[0-9a-f-]{36})\]: (?P<message>.*)$")
"""A task's name is any string without spaces or brackets (`@app.task(name="billing-v2.charge")`), not only a
dotted module path."""


def parse_line(text: str) -> dict:
    """One line's format and fields (those its format carries; the others are None)."""
    row = {c: None for c in COLUMNS} | {"text": text, "message": text, "format": "raw"}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            row.update(format="json", level=data.get("level") or data.get("levelname"),
                       process=data.get("process") or data.get("processName"), pid=data.get("pid"),
                       logger=data.get("logger") or data.get("name"), task_name=data.get("task_name"),
                       task_id=data.get("task_id"), message=str(data.get("message", data.get("msg", stripped))))
            return row
    m = CELERY_LINE.match(text)
    if m:
        row.update(format="celery", level=m["level"], process=m["process"], message=m["message"])
        task = TASK_PART.match(m["message"])
        if task:
            row.update(task_name=task["task_name"], task_id=task["task_id"], message=task["message"])
    return row


def frame(texts: dict[str, str]) -> pd.DataFrame:
    """One row per line of each text: `texts` maps a stream's name ("stdout", "stderr", "file") to its text."""
    rows = []
    for stream, text in texts.items():
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                rows.append(parse_line(line) | {"stream": stream, "line": number})
    return pd.DataFrame(rows, columns=COLUMNS)


def of_worker(worker, file: str | Path | None = None) -> pd.DataFrame:
    """The lines of a `Worker`'s stdout and stderr, and of `file` (or its `-f` file) when there is one."""
    texts = {stream: worker.logs(stream=stream) for stream in ("stdout", "stderr")}
    file = file or getattr(worker, "log_to", None)
    if file is not None:
        path = Path(file)
        texts["file"] = path.read_text(errors="replace") if path.exists() else ""
    return frame(texts)


def mentioning(lines: pd.DataFrame, words: str) -> pd.DataFrame:
    """The lines whose message holds `words`, not followed by more of a name ("order-2" is not "order-20" nor
    "order-2@host"): a line carries its words in its message, whatever its format."""
    pattern = re.escape(words) + r"(?![\w@-])"
    return lines[lines.message.str.contains(pattern, regex=True, na=False)]


def streams(lines: pd.DataFrame) -> pd.DataFrame:
    """Per stream (or file): how many lines, and how many of them are log records (Celery's format or JSON)."""
    records = lines.format.isin(["celery", "json"])
    out = pd.DataFrame({"lines": lines.groupby("stream").size(),
                        "log records": records.groupby(lines.stream).sum()})
    return out.reindex([s for s in ("stdout", "stderr", "file") if s in out.index]).fillna(0).astype(int)


def where(lines: pd.DataFrame) -> str:
    """Where a set of lines went, in words: 'stderr (celery, WARNING/ForkPoolWorker-1)', 'stdout (json)', or
    'nowhere'; several places joined with ' + '."""
    if lines.empty:
        return "nowhere"
    places = []
    for (stream, fmt), part in lines.groupby(["stream", "format"], sort=False):
        said = fmt
        if fmt == "celery":
            levels = sorted(set(part.level.dropna()))
            said += f", {'/'.join(levels)}"
        places.append(f"{stream} ({said})")
    return " + ".join(places)
