"""Auto-checked exercises, in the spirit of Kaggle's learntools.

An exercise is a small declarative object: its id, the workspace module the learner writes (with %%writefile),
the functions it looks for, and a `judge` made of plain asserts over what the workers did; its words (title, the
praise a pass gives, hints) are in course.toml. Every outcome is an exception (outcomes.py), turned into a
Verdict and a progress entry in one place, `Exercise.verdict`, within the check's time bound (budget.py);
calls.py runs the learner's functions and sends their tasks. A `____` placeholder left in a function means
"not attempted", never "wrong".
"""
from __future__ import annotations

import ast
import importlib
import os
import random
import time
from pathlib import Path

from . import progress
from .budget import CHECK_TIMEOUT_S, bounded
from .errors import CourseError
from .learner import PLACEHOLDER
from .outcomes import Incorrect, NotAttempted, Outcome, Text, Uncheckable, Verdict

IMPORT_TIMEOUT_S = 10.0
"""How long the learner's module may take to import (about 1 s here, most of it pandas and matplotlib)."""


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


def hidden_pairs(n: int, shown: tuple = ()) -> list[tuple[int, int]]:
    """`n` (x, y) pairs drawn afresh for each check: x != y, no 0 or +-1, none that the notebook shows."""
    rng = random.SystemRandom()
    out: list[tuple[int, int]] = []
    while len(out) < n:
        pair = (rng.randint(-60, 60), rng.randint(-60, 60))
        if pair[0] != pair[1] and min(map(abs, pair)) > 1 and pair not in shown and pair not in out:
            out.append(pair)
    return out


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
    concurrency = 1
    """Pool processes of the check's worker (prefork): 2 when the check runs two copies of a task at once."""
    slow_redis_s = 0.0
    """> 0: each Redis command the learner's task body sends waits this long on the check's worker (a network's
    round trip), so copies that start together overlap by whole commands (`checks.host`)."""
    broker = "redis"
    """The broker the learner's app and the check's worker use: "redis" or "rabbitmq" (results stay on Redis)."""
    concurrency = 1
    """Pool processes of the check's worker (`-c`)."""
    timeout = CHECK_TIMEOUT_S
    import_timeout = IMPORT_TIMEOUT_S

    # -- what the learner calls ------------------------------------------------------------------------
    def check(self, workspace_dir: str | os.PathLike | None = None) -> Verdict:
        """Judge the learner's module and return the verdict card; in strict mode a wrong or uncheckable answer
        raises AssertionError instead, after running an uncheckable one once more (what its card tells a learner
        to do: a busy machine is a reason to try again, not a wrong answer)."""
        verdict = self.verdict(workspace_dir)
        if strict() and verdict.status == Uncheckable.status:
            verdict = self.verdict(workspace_dir)
        if strict() and verdict.status in (Incorrect.status, Uncheckable.status):
            raise AssertionError(repr(verdict))
        return verdict

    def verdict(self, workspace_dir: str | os.PathLike | None = None) -> Verdict:
        """Judge the learner's module; never raises (a KeyboardInterrupt aside)."""
        from .checking import Session
        from .evidence import changed_lab_tasks

        begun = time.monotonic()
        observed: list[str] = []
        source, fix, session = None, "", None
        try:
            source = self.source(Path(workspace_dir) if workspace_dir else Path("workspace"))
            with bounded(self.timeout), Session(self, source) as session:
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
        note = session.misspelt_settings() if status == Incorrect.status and session is not None else ""
        if note:  # likely the very reason the behaviour was wrong: said with what was seen
            message = f"{message.rstrip('.')}. {note}"
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
        from celery.exceptions import ImproperlyConfigured

        app = app_in(mod)
        if app is None:
            raise Incorrect(f"{self.module}.py has no Celery app for a worker to serve",
                            fix=f"create one: `app = ck.make_app('{self.module}')`")
        try:
            app.conf.task_default_queue  # Celery reads the settings on first use, and refuses some only then
        except ImproperlyConfigured as exc:
            raise Incorrect(f"Celery refuses your app's settings: {' '.join(str(exc).split())}",
                            fix="write every setting by its lowercase name (e.g. worker_concurrency, "
                                "task_acks_late), as in Celery's documentation") from None
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
            code = (exc.text or "").strip()
            where = f"line {exc.lineno}" + (f" (`{code[:80]}`)" if code else "")  # the file's numbering: quoted
            raise Incorrect(f"{path.name}, {where}: syntax error: {exc.msg}",  # so the cell's extra line misleads none
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
