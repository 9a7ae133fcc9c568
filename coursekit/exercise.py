"""Auto-checked exercises, in the spirit of Kaggle's learntools.

An exercise is a small declarative object: its id, the workspace module the learner writes (with %%writefile),
the functions it looks for, and a `judge` made of plain asserts over what the workers did; its words (title, the
praise a pass gives, hints) are in course.toml. Every outcome is an exception (NotAttempted, Incorrect,
Uncheckable), turned into a Verdict and a progress entry in one place, `Exercise.check`. A `____` placeholder
left in a function means "not attempted", never "wrong".
"""
from __future__ import annotations

import ast
import html
import importlib
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import progress
from .errors import CourseError
from .learner import PLACEHOLDER

CHECK_TIMEOUT_S = 30.0
IMPORT_TIMEOUT_S = 10.0
"""How long the learner's module may take to import (about 1 s here, most of it pandas and matplotlib)."""
COLOURS = {"passed": "#1a7f37", "incorrect": "#cf222e", "not attempted": "#6e7781", "uncheckable": "#9a6700"}


class Outcome(Exception):
    """A verdict other than "passed": the message says what happened, `fix` what to do about it."""

    status = ""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix


class NotAttempted(Outcome):
    status = "not attempted"


class Incorrect(Outcome):
    status = "incorrect"


class Uncheckable(Outcome):
    status = "uncheckable"


@dataclass
class Verdict:
    exercise: str
    status: str
    message: str
    observed: list[str]
    seconds: float
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        lines = [f"[{self.status.upper()}] {self.exercise}: {self.message}"]
        lines += [f"  fix: {self.fix}"] if self.fix else []
        lines += [f"  observed: {o}" for o in self.observed]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.status, "#6e7781")
        items = "".join(f"<li><code>{html.escape(o)}</code></li>" for o in self.observed)
        return (f'<div style="border-left:6px solid {colour};padding:6px 12px;margin:4px 0">'
                f'<b style="color:{colour}">{html.escape(self.status.capitalize())}</b> · '
                f'{html.escape(self.exercise)} ({self.seconds:.1f} s)<br>{html.escape(self.message)}'
                f'{"<br><i>Fix:</i> " + html.escape(self.fix) if self.fix else ""}'
                f'{"<ul style=margin:4px>" + items + "</ul>" if items else ""}</div>')


@dataclass
class Text:
    """A hint or a solution: Markdown in a notebook, plain text in a terminal."""
    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


_deadline: float | None = None  # set while a check runs: every wait inside it draws on the same 30 s
_limit = CHECK_TIMEOUT_S  # that check's whole time, for messages


def budget(seconds: float) -> float:
    """`seconds`, or what is left of the running check's time if that is less; Uncheckable when none is left."""
    if _deadline is None:
        return seconds
    left = _deadline - time.monotonic()
    if left <= 0:
        raise Uncheckable(f"the check ran out of its {_limit:.0f} s; nothing was judged")
    return min(seconds, left)


def out_of_time(margin: float = 0.5) -> bool:
    """True when the running check has (almost) used up its time: a wait that gave up then was cut by the
    check's bound, and the learner should hear that, not why the wait itself ended."""
    return _deadline is not None and _deadline - time.monotonic() < margin


def workspace(folder: str | os.PathLike = "workspace") -> Path:
    """The folder learners write their modules into (with %%writefile), created if missing."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def named(name: str) -> str:
    """How a message names one of an exercise's names: `send_later()` a function, `WORKERS` a module constant."""
    return name if name.isupper() else f"{name}()"


def where_blank(source, names) -> str:
    """' (it sits in app, resize_now())' when a name the card lists holds no `____` itself but a module-level name it
    uses does (a task whose app's settings are still blank): the card then points at the lines to edit."""
    if all(source.holds_placeholder(n) for n in names):
        return ""
    sits = dict.fromkeys(n for name in names for n in source.closure(name) if source.holds_placeholder(n))
    called = [f"{n}()" if any(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in source.bindings[n])
              else n for n in sits]
    return f" (it sits in {', '.join(called)})"


def strict() -> bool:
    """Strict mode (course tests): a wrong or uncheckable answer raises instead of only showing a card."""
    return os.environ.get("COURSEKIT_STRICT", "").lower() in ("1", "true", "yes")


@dataclass
class Called:
    """What a call of the learner's function gave, and when (Unix times, to match the messages it published)."""

    value: object
    seconds: float
    begun: float
    ended: float


def call(fn, *args, timeout: float = 5.0, name: str = "", source=None) -> Called:
    """Run the learner's function with a time bound. A raise is Incorrect, naming the learner's line (`source`)."""
    from .learner import raised_at

    label = name or f"{getattr(fn, '__name__', 'the function')}{args}".replace(",)", ")")
    limit = budget(timeout)
    box: dict = {}

    def target():
        box["begun"] = time.time()
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # the learner's code raised: that is the answer being judged
            box["error"] = exc
        box["ended"] = time.time()

    thread = threading.Thread(target=target, daemon=True, name="coursekit-learner-call")
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        if limit < timeout:
            raise Uncheckable(f"{label} was still running when the check's {_limit:.0f} s ran out")
        raise Incorrect(f"{label} did not return within {timeout:g} s: it must not block or wait for the task")
    if "error" in box:
        exc = box["error"]
        line = raised_at(exc, source.path) if source is not None else None
        where = f" at {source.where(line)}" if line else ""
        raise Incorrect(f"{label} raised {type(exc).__name__}: {exc}{where}")
    return Called(box["value"], box["ended"] - box["begun"], box["begun"], box["ended"])


def hidden_pairs(n: int, shown: tuple = ()) -> list[tuple[int, int]]:
    """`n` (x, y) pairs drawn afresh for each check: x != y, no 0 or +-1, none that the notebook shows."""
    rng = random.SystemRandom()
    out: list[tuple[int, int]] = []
    while len(out) < n:
        pair = (rng.randint(-60, 60), rng.randint(-60, 60))
        if pair[0] != pair[1] and min(map(abs, pair)) > 1 and pair not in shown and pair not in out:
            out.append(pair)
    return out


def send(task, args: tuple, source=None):
    """`task.apply_async(args)` for the check; a raise (wrong arguments for the task's signature, a task that
    cannot be built) is Incorrect, naming the learner's line."""
    from .learner import raised_at

    label = f"{task.name.rsplit('.', 1)[-1]}.delay{args}".replace(",)", ")")
    try:
        return task.apply_async(args)
    except Exception as exc:
        line = raised_at(exc, source.path) if source is not None else None
        where = f" at {source.where(line)}" if line else ""
        raise Incorrect(f"{label} raised {type(exc).__name__}: {exc}{where}") from None


def unexpected(exc: BaseException, source) -> tuple[str, str]:
    """An exception no check foresaw, as one sentence and a fix: the learner's line when the learner's code raised
    it, else a plain statement that the check itself failed (not the answer)."""
    from .learner import raised_at

    line = raised_at(exc, source.path) if source is not None else None
    what = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if line:
        return (f"your module raised {what} at {source.where(line)}, and the check could not go on",
                f"look at line {line} of {source.path.name}; then check again")
    return (f"the check itself failed ({what}); this says nothing about your answer",
            "check again; if it happens again, `coursekit doctor` may say why, or report it with this message")


class Exercise:
    """Subclasses set the class attributes and write `run` (do the experiment, return what was seen) and `judge`
    (plain asserts over it). `check` does the rest: load the module safely, boot the worker, clear the slate, and
    turn every outcome, foreseen or not, into a Verdict."""

    id = ""
    module = ""
    """The learner's module, `workspace/<module>.py`."""
    functions: tuple[str, ...] = ()
    """This exercise's own names in the module (functions, or UPPER_CASE constants such as the settings it asks
    for); a `____` left in one of them means "not attempted"."""
    lab: str | None = None
    """The lab module the check's worker runs (the learner's functions send its tasks); None: the worker runs the
    learner's module itself, whose tasks are the answer."""
    fleet = False
    """True: the check boots no worker of its own; `run` starts several, named, with `session.start_fleet`."""
    broker = "redis"
    """The broker the learner's app and the check's worker use: "redis" or "rabbitmq" (results stay on Redis)."""
    timeout = CHECK_TIMEOUT_S
    import_timeout = IMPORT_TIMEOUT_S

    # -- what the learner calls ------------------------------------------------------------------------
    def check(self, workspace_dir: str | os.PathLike | None = None) -> Verdict:
        """Judge the learner's module and return the verdict card; in strict mode a wrong or uncheckable answer
        raises AssertionError instead."""
        verdict = self.verdict(workspace_dir)
        if strict() and verdict.status in (Incorrect.status, Uncheckable.status):
            raise AssertionError(repr(verdict))
        return verdict

    def verdict(self, workspace_dir: str | os.PathLike | None = None) -> Verdict:
        """Judge the learner's module; never raises (a KeyboardInterrupt aside)."""
        from .checking import Session
        from .evidence import changed_lab_tasks

        global _deadline, _limit
        begun = time.monotonic()
        _deadline, _limit = begun + self.timeout, self.timeout
        observed: list[str] = []
        source, fix = None, ""
        try:
            source = self.source(Path(workspace_dir) if workspace_dir else Path("workspace"))
            with Session(self, source) as session:
                seen = self.run(session, observed)
                changed = changed_lab_tasks()
                if changed:
                    raise Incorrect(f"your module changed the lab's task itself ({'; '.join(changed)}): every "
                                    "later call of that task, in every module, would carry it",
                                    fix="pass the option to this one call instead, e.g. apply_async(..., expires=1)")
                self.judge(seen, observed)
            status, message = "passed", self.praise
        except AssertionError as exc:
            status, message = Incorrect.status, str(exc) or "the behaviour does not match the task"
        except Outcome as exc:
            status, message, fix = exc.status, str(exc), exc.fix
        except CourseError as exc:
            status, message, fix = Uncheckable.status, exc.problem, exc.fix
        except Exception as exc:  # nothing raises past the card
            status = Uncheckable.status
            message, fix = unexpected(exc, source)
        finally:
            _deadline = None
        verdict = Verdict(self.id, status, message, observed, time.monotonic() - begun, fix)
        try:
            progress.record_check(self.id, status)
        except OSError:
            pass  # progress is a convenience: a full disk must not hide the verdict
        return verdict

    def hint(self, tier: int = 1) -> Text:
        hints = self.hints()
        if not hints:
            return Text("No hint for this one.")
        tier = max(1, min(int(tier), len(hints)))
        progress.record_hint(self.id, tier)
        more = f"  (hint {tier} of {len(hints)}; `hint({tier + 1})` for more)" if tier < len(hints) else ""
        return Text(f"**Hint {tier}:** {hints[tier - 1]}{more}")

    def solution(self) -> Text:
        from .build import solution_of

        progress.record_solution(self.id)
        return Text(f"**Solution** ({self.id}), in `workspace/{self.module}.py`:\n\n```python\n"
                    f"{solution_of(self)}\n```")

    # -- what subclasses provide -----------------------------------------------------------------------
    def run(self, session, observed: list[str]):
        raise NotImplementedError

    def judge(self, seen, observed: list[str]) -> None:
        raise NotImplementedError

    def app_of(self, mod):
        """The Celery app whose queue the check's worker reads: the lab's, or the one the learner's module uses."""
        from .checking import app_in

        if self.lab:
            return app_in(importlib.import_module(self.lab))
        app = app_in(mod)
        if app is None:
            raise Incorrect(f"{self.module}.py has no Celery app for a worker to serve",
                            fix=f"create one: `app = ck.make_app('{self.module}')`")
        return app

    # -- shared machinery ------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        return self.manifest().get("title", "")

    @property
    def praise(self) -> str:
        """What a passed check says it saw."""
        return self.manifest().get("praise", "Correct.")

    def hints(self) -> list[str]:
        return self.manifest().get("hints", [])

    def manifest(self) -> dict:
        """This exercise's entry in course.toml: its title, praise and hints, the words the course says about it."""
        from .course import exercises

        return exercises().get(self.id, {})

    def source(self, folder: Path):
        """The learner's file, parsed; NotAttempted while it is missing or this exercise's names hold `____`."""
        from .learner import Source

        path = folder.resolve() / f"{self.module}.py"
        if not path.exists():
            raise NotAttempted(f"{path.name} does not exist yet: run the %%writefile cell that creates it")
        try:
            source = Source.read(path)
        except SyntaxError as exc:
            raise Incorrect(f"{path.name}, line {exc.lineno}: syntax error: {exc.msg}",
                            fix="correct that line, run the %%writefile cell again, then check") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise Uncheckable(f"cannot read {path.name}: {exc}") from None
        blank = [name for name in self.functions if source.blank(name)]
        if blank:
            names = ", ".join(named(n) for n in blank)
            own = {n for name in self.functions for n in source.closure(name)}
            others = [n for n in source.blanks() if n not in own]
            also = f" Other exercises' functions still blank in the module: {', '.join(map(named, others))}." \
                if others else ""
            raise NotAttempted(f"{names} still hold{'s' if len(blank) == 1 else ''} the {PLACEHOLDER} placeholder "
                               f"in {path.name}{where_blank(source, blank)}.{also}",
                               fix=f"replace each {PLACEHOLDER} with your answer")
        return source
