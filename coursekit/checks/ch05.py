"""Chapter 05 exercises: logging, judged from what the check's worker wrote on its stdout and stderr (and in a file),
line by line (`loglines`), and from the tasks the recorder saw run.

Each check starts a worker on the learner's module, sends its task a few items it draws afresh (names no notebook
shows), waits for each to end, and stops the worker, so that its streams are complete. Then every line that names
one of those items is traced: which stream or file it reached, in which format, how many times, and whether the
task id it carries is the id of the task that wrote it, as the recorder saw it run.
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import loglines
from ..budget import budget
from ..calls import send
from ..evidence import Ending, ending
from ..exercise import Exercise
from ..outcomes import Incorrect
from ..trials import task_named

RUN_WAIT_S = 8.0
"""How long, at most, the check waits for all its tasks to end."""
STOP_WAIT_S = 6.0
"""How long a warm shutdown may take before the check kills the worker (its streams are complete either way)."""
TASK_ID = re.compile(r"\[(?P<task_id>[0-9a-f]{8}-[0-9a-f-]{27})\]")


@dataclass
class Seen:
    """What one check saw: the items it sent, their task ids, the recorded runs, the worker's lines."""

    items: list[str]
    ids: list[str]
    task_name: str
    recorded: dict[str, dict] = field(default_factory=dict)
    """Task id -> its run as the recorder saw it (`name`, `pid`, `outcome`)."""
    lines: pd.DataFrame = field(default_factory=pd.DataFrame)
    file_whole: str = ""
    """LOG_FILE after the run, from its first byte: a handler that writes over older lines leaves the tasks' lines
    (or part of one) before the point where the file ended when the check's tasks began."""

    def of(self, words: str, item: str, stream: str | None = None) -> pd.DataFrame:
        found = loglines.mentioning(self.lines, f"{words} {item}" if words else item)
        return found if stream is None else found[found.stream == stream]

    def id_of(self, item: str) -> str:
        return self.ids[self.items.index(item)]


def quoted(line: str, limit: int = 160) -> str:
    line = line.strip()
    return repr(line if len(line) <= limit else line[:limit - 1] + "…")


LOGGING_ERROR = "--- Logging error ---"
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Warning): ")


def logging_error(seen: Seen) -> str:
    """What a handler that failed said, in a sentence ('' when none did): `logging` reports a record it could not
    format or write ("--- Logging error ---" and a traceback, on stderr, or through Celery's redirect) and drops it."""
    for stream, part in seen.lines.groupby("stream", sort=False):
        messages = list(part.message.astype(str))
        for at, message in enumerate(messages):
            if LOGGING_ERROR in message:
                said = next((m.strip() for m in messages[at + 1:at + 40] if EXCEPTION_LINE.match(m.strip())), "")
                what = f": {quoted(said)}" if said else ""
                return (f"the worker's {stream} holds Python's {LOGGING_ERROR!r} report{what}. A handler could not "
                        "format or write a record, and dropped it (a format naming %(task_name)s or %(task_id)s "
                        "needs celery.app.log.TaskFormatter, which fills them; logging.Formatter does not)")
    return ""


class StreamsExercise(Exercise):
    """Subclasses name the task, what it writes (`says`: kind -> the words before the item) and judge `Seen`."""

    task = ""
    prefix = ""
    says: dict[str, str] = {}

    def file(self, s) -> Path | None:
        """A file the worker also writes to (read with its streams), or None."""
        return None

    def run(self, s, observed):
        rng = random.SystemRandom()
        task = task_named(s.mod, self.task)
        tag = rng.randint(1000, 9999)
        items = [f"{self.prefix}-{tag}-{i}" for i in range(1, rng.randint(3, 5) + 1)]
        file = self.file(s)
        skip = file.stat().st_size if file is not None and file.exists() else 0  # lines of earlier runs
        s.consume()
        results = [send(task, (item,), s.source) for item in items]
        begun = time.monotonic()
        endings = [ending(r, budget(max(0.1, begun + RUN_WAIT_S - time.monotonic())), sent=begun) for r in results]
        for item, end in zip(items, endings):
            self.ran(item, end)
        runs = s.runs([r.id for r in results])
        recorded = {}
        for item, r in zip(items, results):
            mine = runs[r.id]
            if len(mine) != 1 or not mine[0]["in_pool"]:
                raise Incorrect(f"{self.task}({item!r}) ran {len(mine)} time(s) in the check worker's pool; it must "
                                "run once there")
            recorded[r.id] = mine[0]
        s.worker.stop(timeout=budget(STOP_WAIT_S))  # its streams are complete once it has exited
        texts = {stream: s.worker.logs(stream=stream) for stream in ("stdout", "stderr")}
        if file is not None:
            texts["file"] = file.read_bytes()[skip:].decode(errors="replace") if file.exists() else ""
        seen = Seen(items, [r.id for r in results], task.name, recorded, loglines.frame(texts))
        if file is not None and file.exists():
            seen.file_whole = file.read_bytes().decode(errors="replace")
        theirs = pd.concat([seen.of(words, item) for item in items for words in self.says.values()])
        observed.append(f"sent {self.task}() with {', '.join(map(repr, items))}; each logs "
                        f"{' and '.join(repr(w + ' <item>') for w in self.says.values())}: "
                        f"{len(items) * len(self.says)} line(s) in all")
        for place in ("stdout", "stderr", "file") if file is not None else ("stdout", "stderr"):
            part = theirs[theirs.stream == place]
            formats = ", ".join(f"{n} {fmt}" for fmt, n in part.format.value_counts().items()) or "none"
            observed.append(f"{place}: {len(part)} of those lines ({formats})")
        return seen

    def ran(self, item: str, end: Ending) -> None:
        if end.state != "SUCCESS":
            raise Incorrect(f"{self.task}({item!r}) {end.describe()}; every task must run and succeed")

    # -- shared verdicts -----------------------------------------------------------------------------------------
    @staticmethod
    def right_id(seen: Seen, item: str, line: pd.Series, what: str) -> None:
        """The task id (and name) `line` carries must be those of the task that wrote it, as the recorder saw it."""
        task_id = seen.id_of(item)
        carried = line.task_id if isinstance(line.task_id, str) and line.task_id.strip() else None
        if carried is None and line.format != "json":  # a JSON line's task_id field is all it carries
            found = TASK_ID.search(line.text)
            carried = found["task_id"] if found else None
        if carried is None:
            field = " (an empty or missing task_id field)" if line.format == "json" else ""
            raise AssertionError(f"{what} {quoted(line.text)} carries no task id{field}; the check's task was "
                                 f"{task_id}")
        if carried != task_id:
            known = "another of the check's tasks" if carried in seen.ids else "no task the worker ran"
            raise AssertionError(f"{what} {quoted(line.text)} carries task id {carried}, {known}; the task that wrote "
                                 f"it was {task_id}")
        name = line.task_name if isinstance(line.task_name, str) and line.task_name.strip() else None
        recorded = seen.recorded[task_id].get("name") or seen.task_name
        if name is None and (line.format == "json" or recorded not in line.text):
            field = " (an empty or missing task_name field)" if line.format == "json" else ""
            raise AssertionError(f"{what} {quoted(line.text)} carries the task's id but not its name{field}; the "
                                 f"recorder saw {recorded!r} run with that id")
        if name is not None and name != recorded:
            raise AssertionError(f"{what} {quoted(line.text)} names the task {name!r}; the recorder saw {recorded!r} "
                                 "run with that id")


# -- 05.json_logs ---------------------------------------------------------------------------------------------------------
class JsonOnStdout(StreamsExercise):
    """Every line the tasks log is JSON on stdout, with the task's id and name, once; nothing of theirs on stderr."""

    id = "05.json_logs"
    module = "ex05_json"
    functions = ("json_logging",)
    task, prefix = "reserve", "sku"
    says = {"task logger": "reserving", "plain logger": "stock checked for"}

    def judge(self, seen: Seen, observed):
        for item in seen.items:
            ours = [seen.of(words, item, "stderr") for words in self.says.values()]
            on_stderr = pd.concat([*ours, seen.of("", item, "stderr")])  # the task's own lines first
            if len(on_stderr):
                raise AssertionError(self.why_stderr(seen, item, on_stderr.iloc[0]))
        for item in seen.items:
            for kind, words in self.says.items():
                found = seen.of(words, item, "stdout")
                what = f"the {kind} line {words!r} of {self.task}({item!r})"
                if found.empty:
                    raise AssertionError(f"{what} reached neither stream: {self.why_missing(seen, item, kind)}")
                raw = found[found.format != "json"]
                if len(raw):
                    raise AssertionError(f"{what} came out on stdout as {quoted(raw.iloc[0].text)}: not a JSON object; "
                                         "format it with a JSON formatter (e.g. coursekit.labs.jsonlog.JsonFormatter)")
                if len(found) > 1:
                    raise AssertionError(f"{what} came out {len(found)} times on stdout: {self.why_twice(seen)}; "
                                         "a shipper would count every event twice")
                self.right_id(seen, item, found.iloc[0], f"{what}, {found.iloc[0].format} on stdout,")

    def why_missing(self, seen: Seen, item: str, kind: str) -> str:
        """Why a line is nowhere, from what did come out: a handler's error, the message without its arguments, the
        other line of the same task (a task logger line alone missing is celery.task not propagating), or nothing."""
        failed = logging_error(seen)
        if failed:
            return failed
        words = self.says[kind]
        bare = loglines.mentioning(seen.lines, words)
        bare = bare[bare.message.str.contains("%s", regex=False)]
        if len(bare):
            return (f"lines came out as {quoted(bare.iloc[0].text)}: the message without its arguments. A formatter "
                    "gets it from record.getMessage() (record.msg is the format string before the arguments)")
        plain = seen.of(self.says["plain logger"], item, "stdout")
        if kind == "task logger" and len(plain):
            return ("the plain logger's line of the same task did come out, on stdout. Task loggers hang under "
                    "`celery.task`, to which Celery gives a handler of its own and propagate=False when it sets up "
                    "logging: a handler on the root never sees their records")
        return ("no line of the task's reached a stream at all. A level above INFO, on the root logger or on your "
                "handler, drops them: the worker runs with -l INFO and passes that to a setup_logging receiver as "
                "`loglevel`")

    @staticmethod
    def why_twice(seen: Seen) -> str:
        """Two handlers wrote each line; when the worker's main process wrote its own lines once and the pool child
        twice, the second handler was added in the child, on top of what the child inherited through the fork."""
        json_out = seen.lines[(seen.lines.stream == "stdout") & (seen.lines.format == "json")]
        main = json_out[json_out.process == "MainProcess"]
        if len(main) and not main.text.duplicated().any():
            return ("two handlers wrote it in the pool child, while the main process wrote its own lines once: the "
                    "child inherits the main process's handlers through the fork, and a set-up run again there "
                    "(worker_process_init) adds a second")
        return ("two handlers on its way wrote it: two on one logger (a set-up run twice), or one on the logger "
                "and one on a logger above it that the record propagates to")

    def why_stderr(self, seen: Seen, item: str, line: pd.Series) -> str:
        said = f"stderr got {quoted(line.text)}"
        if line.format == "json":
            return (f"{said}: JSON, but on stderr; logging.StreamHandler() writes to stderr unless you give it "
                    "sys.stdout")
        words = next((w for w in self.says.values() if f"{w} {item}" in line.message), None)
        twin = seen.of(words, item, "stdout") if words else seen.lines[:0]
        if line.format == "celery" and (twin.format == "json").any():
            return (f"{said} in Celery's format, and the same line as JSON on stdout: your JSON handler was added "
                    "beside Celery's stderr handler (after_setup_logger / after_setup_task_logger add to Celery's "
                    "set-up); replace the handlers you are given, or set up logging yourself with a setup_logging "
                    "receiver")
        json_on_stdout = seen.lines[(seen.lines.stream == "stdout") & (seen.lines.format == "json")]
        if line.format == "celery" and isinstance(line.task_id, str) and \
                len(loglines.mentioning(json_on_stdout, item)):
            return (f"{said}: the task logger's line, in Celery's format, while other lines of the task went to your "
                    "JSON handler. Task loggers hang under `celery.task`, which Celery gives a stderr handler of its "
                    "own (even with worker_hijack_root_logger=False) and which does not propagate to the root")
        if line.format == "celery":
            return (f"{said} in Celery's format, and no JSON line on stdout: the root logger is still hijacked. "
                    "worker_hijack_root_logger (default True) empties the root's handlers when the worker sets up "
                    "logging, after your module was imported, so a JSON handler added at import is gone. Take over "
                    "where Celery expects it: a setup_logging receiver")
        return f"{said}: nothing of the tasks' may reach stderr"


# -- 05.log_file ---------------------------------------------------------------------------------------------------------
class FileToo(StreamsExercise):
    """Celery's set-up kept (every line on stderr, in its format), and each line also once in LOG_FILE, in the same
    format, the task logger's with the task's name and id."""

    id = "05.log_file"
    module = "ex05_file"
    functions = ("file_too",)
    task, prefix = "ship", "parcel"
    says = {"task logger": "shipping", "plain logger": "label printed for"}

    def file(self, s) -> Path:
        value = getattr(s.mod, "LOG_FILE", None)
        if not isinstance(value, (str, Path)) or not str(value):
            raise Incorrect(f"{self.module}.py has no LOG_FILE path (found {value!r})",
                            fix="keep the line LOG_FILE = Path(__file__).with_name('ex05_shop.log')")
        path = Path(value)
        return path if path.is_absolute() else s.worker.cwd / path  # relative to where the worker runs

    def judge(self, seen: Seen, observed):
        for item in seen.items:
            for kind, words in self.says.items():
                what = f"the {kind} line {words!r} of {self.task}({item!r})"
                console = seen.of(words, item, "stderr")
                if console.empty:
                    raise AssertionError(f"{what} is missing from stderr: " + self.why_no_console(seen, item, words))
                if len(console) > 1:
                    raise AssertionError(f"{what} came out {len(console)} times on stderr; keep Celery's handler "
                                         "as it is, and write the file with a handler of its own")
                line = console.iloc[0]
                if line.format != "celery" or (kind == "task logger" and not isinstance(line.task_id, str)):
                    shape = "[time: LEVEL/process] task[id]: ..." if kind == "task logger" else \
                        "[time: LEVEL/process] ..."
                    raise AssertionError(f"{what} is on stderr as {quoted(line.text)}, not as Celery writes it "
                                         f"(`{shape}`): the console must stay as it is: give your own file handler a "
                                         "formatter, and leave the one on Celery's handler as it is")
                if kind == "task logger":
                    self.right_id(seen, item, line, f"{what}, on stderr,")
        for item in seen.items:
            for kind, words in self.says.items():
                what = f"the {kind} line {words!r} of {self.task}({item!r})"
                in_file = seen.of(words, item, "file")
                if in_file.empty:
                    raise AssertionError(f"{what} is not in LOG_FILE. " + self.why_not_in_file(seen, item, kind))
                if len(in_file) > 1:
                    raise AssertionError(f"{what} is in LOG_FILE {len(in_file)} times: two of your file handlers "
                                         "lie on its way (after_setup_logger and after_setup_task_logger each ran "
                                         "your receiver: add the handler to the logger each one gives you, not to "
                                         "the root)")
                line = in_file.iloc[0]
                if line.format != "celery":
                    raise AssertionError(f"{what} is in LOG_FILE as {quoted(line.text)}, not in Celery's format "
                                         "`[time: LEVEL/process] ...`: give your handler the formatter of Celery's "
                                         "own handler on that logger (or the `format` the signal passes)")
                if kind == "task logger":
                    if not isinstance(line.task_id, str):
                        raise AssertionError(f"{what} is in LOG_FILE as {quoted(line.text)}, without the task's name "
                                             "and id: a task logger's handler formats with worker_task_log_format "
                                             "(celery.app.log.TaskFormatter), as Celery's own does")
                    self.right_id(seen, item, line, f"{what}, in LOG_FILE,")

    def why_no_console(self, seen: Seen, item: str, words: str) -> str:
        lines = seen.lines
        moved = seen.of(words, item, "stdout")
        if len(moved):
            return (f"it came out on stdout instead, as {quoted(moved.iloc[0].text)}: Celery's console handler writes "
                    "to stderr; leave its stream as it is")
        gone = "Celery's own console handler is gone. "
        if not ((lines.stream == "stderr") & (lines.format == "celery")).any():
            return (gone + "stderr holds no log record at all, not even the worker's own: with a setup_logging "
                    "receiver Celery configures nothing; keep its set-up and add to it with after_setup_logger / "
                    "after_setup_task_logger")
        return gone + "Add your handler to the logger each signal gives you; do not replace its handlers"

    def why_not_in_file(self, seen: Seen, item: str, kind: str) -> str:
        failed = logging_error(seen)
        if failed:
            return failed[0].upper() + failed[1:]
        if re.search(re.escape(f"{self.says[kind]} {item}") + r"(?![\w@-])", seen.file_whole):
            return ("It is in the file, but written over lines the file held before the check's tasks ran: two "
                    "handlers each opened LOG_FILE with a write position of its own (mode='w' empties the file for "
                    "each, and each then writes from its own offset, over the other's lines). Open it in append "
                    "mode, the default 'a'")
        if not len(seen.lines[seen.lines.stream == "file"]):
            return ("Nothing reached the file at all: did the receiver run and add a FileHandler on LOG_FILE, and is "
                    "the handler's level above INFO?")
        if kind == "task logger":
            return ("Task loggers hang under `celery.task`, which does not pass records on to the root logger: a "
                    "handler on the root never sees them; after_setup_task_logger gives you that logger")
        return "after_setup_logger gives you the root logger, which the plain logger's records reach"


# -- 05.once ---------------------------------------------------------------------------------------------------------
AUDIT = "refund approved for"


class AuditOnce(StreamsExercise):
    """shop.audit's line written once per task, in the audit team's format (AUDIT ..., with the task's id)."""

    id = "05.once"
    module = "ex05_once"
    functions = ("setup_audit",)
    task, prefix = "refund", "order"
    says = {"audit": AUDIT}

    def judge(self, seen: Seen, observed):
        for item in seen.items:
            found = seen.of(AUDIT, item)
            what = f"the audit line {AUDIT!r} of {self.task}({item!r})"
            audit = found[found.message.str.lstrip().str.startswith("AUDIT")]  # its own, or wrapped by Celery
            wrapped = audit[audit.format == "celery"]
            if found.empty:
                raise AssertionError(f"{what} reached neither stream: " + (logging_error(seen) or (
                    "a level above INFO, on shop.audit or on your handler, drops it; and a logger with "
                    "propagate=False and no handler of its own falls back to Python's last-resort handler, which "
                    "drops records below WARNING (a disabled logger drops everything)")))
            if len(found) > 1 and len(audit) == len(found):
                how = (" One of them was created inside the worker after Celery had replaced sys.stderr "
                       "(worker_redirect_stdouts), so it wrote into Celery's redirect logger: "
                       f"{quoted(wrapped.iloc[0].text)}") if len(wrapped) else ""
                places = sorted(set(found.stream))
                if len(places) > 1:
                    raise AssertionError(f"{what} came out {len(found)} times, each in the audit format, on "
                                         f"{' and on '.join(places)}: one audit handler per stream. Once means one "
                                         f"handler, on either stream.{how}")
                raise AssertionError(f"{what} came out {len(found)} times on {places[0]}, each in the audit format: "
                                     "two audit handlers on the logger (setup_audit ran twice in the process that ran "
                                     f"the task, or added two).{how}")
            if len(found) > 1:
                raise AssertionError(f"{what} came out {len(found)} times: "
                                     f"{' and '.join(quoted(t) for t in found.text)}. Your handler wrote it, and the "
                                     "record went on to the root logger, whose handler (Celery's) wrote it again: "
                                     "stop the propagation (a filter on the root logger does not: a logger's filters "
                                     "see only the records logged on it, not those passed up from below)")
            line = found.iloc[0]
            if len(wrapped):
                raise AssertionError(f"{what} came out as {quoted(line.text)}: your handler wrote to sys.stderr after "
                                     "Celery had replaced it (worker_redirect_stdouts), so Celery logged your line "
                                     "again as a WARNING; create the handler when the module is imported")
            if audit.empty:
                raise AssertionError(f"{what} came out once, as {quoted(line.text)}: Celery's format, not the audit "
                                     "format. A handler on the root logger is emptied by the hijack "
                                     "(worker_hijack_root_logger) when the worker sets up logging; put yours on "
                                     "shop.audit")
            self.right_id(seen, item, line, f"{what}, on {line.stream},")


json_logs = JsonOnStdout()
log_file = FileToo()
once = AuditOnce()
