"""loglines reads a worker's output line by line: the format of each line, the task id it carries, and where a set
of lines went. The logging lesson and chapter 05's checks trust these readings, so they are pinned here."""
from __future__ import annotations

from coursekit import loglines

TASK_ID = "7f3d865f-87a5-476e-affd-13d3d73c9e1e"
TEXTS = {
    "stderr": (f"[2026-01-31 12:00:00,000: INFO/ForkPoolWorker-2] proj.tasks.checkout[{TASK_ID}]: charging order o-2\n"
               "[2026-01-31 12:00:00,001: WARNING/ForkPoolWorker-2] receipt for o-2\n"
               "INFO shop.payments: gateway accepted o-2\n"),
    "stdout": (" -------------- w1@host v5.7.0 (collider)\n"
               '{"level": "INFO", "logger": "shop.payments", "process": "ForkPoolWorker-1", "pid": 12, '
               f'"task_id": "{TASK_ID}", "task_name": "proj.tasks.checkout", "message": "gateway accepted o-20"}}\n'
               "{not json\n"),
}


def test_each_line_gets_its_format_and_fields():
    lines = loglines.frame(TEXTS)
    task = lines.iloc[0]
    assert (task.stream, task.format, task.level, task.process) == ("stderr", "celery", "INFO", "ForkPoolWorker-2")
    assert (task.task_name, task.task_id, task.message) == ("proj.tasks.checkout", TASK_ID, "charging order o-2")
    printed = lines.iloc[1]
    assert (printed.format, printed.level, printed.message) == ("celery", "WARNING", "receipt for o-2")
    assert lines.task_id.notna().tolist() == [True, False, False, False, True, False]
    assert lines.iloc[2].format == "raw"
    banner, shipped, broken = lines[lines.stream == "stdout"].itertuples()
    assert banner.format == "raw" and broken.format == "raw"
    assert (shipped.format, shipped.task_id, shipped.pid, shipped.message) == ("json", TASK_ID, 12,
                                                                               "gateway accepted o-20")


def test_a_task_name_is_read_whatever_its_characters():
    line = f"[2026-01-31 12:00:00,000: INFO/ForkPoolWorker-1] billing-v2.charge[{TASK_ID}]: charging order o-3"
    task = loglines.parse_line(line)
    assert (task["task_name"], task["task_id"], task["message"]) == ("billing-v2.charge", TASK_ID, "charging order o-3")


def test_mentioning_stops_at_the_end_of_a_name():
    lines = loglines.frame(TEXTS)
    assert list(loglines.mentioning(lines, "gateway accepted o-2").stream) == ["stderr"]  # not o-20
    assert len(loglines.mentioning(lines, "w1")) == 0  # the banner names w1@host, another name


def test_where_names_each_stream_and_format():
    lines = loglines.frame(TEXTS)
    assert loglines.where(loglines.mentioning(lines, "o-2")) == "stderr (celery, INFO/WARNING) + stderr (raw)"
    assert loglines.where(lines[:0]) == "nowhere"
    streams = loglines.streams(lines)
    assert streams.to_dict("index") == {"stdout": {"lines": 3, "log records": 1},
                                        "stderr": {"lines": 3, "log records": 2}}
