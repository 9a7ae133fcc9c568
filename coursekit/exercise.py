"""Auto-checked exercises, in the spirit of Kaggle's learntools.

An exercise is a small declarative object: its id, the workspace module the learner writes (with %%writefile),
the functions it looks for, and a `judge` made of plain asserts over what the workers did. Every outcome is an
exception (NotAttempted, Incorrect, Uncheckable), turned into a Verdict and a progress entry in one place,
`Exercise.check`. A `____` placeholder left in a function means "not attempted", never "wrong".
"""
from __future__ import annotations

import ast
import html
import importlib.util
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import progress
from .errors import CourseError

PLACEHOLDER = "____"
CHECK_TIMEOUT_S = 30.0
COLOURS = {"passed": "#1a7f37", "incorrect": "#cf222e", "not attempted": "#6e7781", "uncheckable": "#9a6700"}


class Outcome(Exception):
    status = ""


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

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        lines = [f"[{self.status.upper()}] {self.exercise}: {self.message}"]
        lines += [f"  observed: {o}" for o in self.observed]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.status, "#6e7781")
        items = "".join(f"<li><code>{html.escape(o)}</code></li>" for o in self.observed)
        return (f'<div style="border-left:6px solid {colour};padding:6px 12px;margin:4px 0">'
                f'<b style="color:{colour}">{html.escape(self.status.capitalize())}</b> · '
                f'{html.escape(self.exercise)} ({self.seconds:.1f} s)<br>{html.escape(self.message)}'
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


def budget(seconds: float) -> float:
    """`seconds`, or what is left of the running check's time if that is less; Uncheckable when none is left."""
    if _deadline is None:
        return seconds
    left = _deadline - time.monotonic()
    if left <= 0:
        raise Uncheckable(f"the check ran out of its {CHECK_TIMEOUT_S:.0f} s; nothing was judged")
    return min(seconds, left)


def workspace(folder: str | os.PathLike = "workspace") -> Path:
    """The folder learners write their modules into (with %%writefile), created if missing."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def check_worker(module: str, **options):
    """A worker for one check. Killed, not warm-stopped, on the way out: by then the check has what it needs, and
    a learner's task that never ends must not hold the verdict for the 10 s a warm shutdown waits."""
    from .worker import Worker

    worker = Worker(module, name="check", **options)
    try:
        yield worker.start(timeout=budget(20))
    finally:
        worker.kill()


def strict() -> bool:
    """Strict mode (course tests): a wrong or uncheckable answer raises instead of only showing a card."""
    return os.environ.get("COURSEKIT_STRICT", "").lower() in ("1", "true", "yes")


def call(fn, *args, timeout: float = 5.0, name: str = ""):
    """Run the learner's function with a time bound. Returns (value, seconds it took)."""
    label = name or f"{getattr(fn, '__name__', 'the function')}{args}"
    limit = budget(timeout)
    box: dict = {}

    def target():
        begun = time.monotonic()
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # the learner's code raised: that is the answer being judged
            box["error"] = exc
        box["seconds"] = time.monotonic() - begun

    thread = threading.Thread(target=target, daemon=True, name="coursekit-learner-call")
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        if limit < timeout:
            raise Uncheckable(f"{label} was still running when the check's {CHECK_TIMEOUT_S:.0f} s ran out")
        raise Incorrect(f"{label} did not return within {timeout:g} s: it must not block or wait for the task")
    if "error" in box:
        exc = box["error"]
        raise Incorrect(f"{label} raised {type(exc).__name__}: {exc}")
    return box["value"], box["seconds"]


class Exercise:
    """Subclasses set the class attributes and write `run` (do the experiment) and `judge` (plain asserts)."""

    id = ""
    title = ""
    module = ""
    """The learner's module, `workspace/<module>.py`."""
    functions: tuple[str, ...] = ()
    """The functions this exercise needs; a `____` left in one of them means "not attempted"."""
    timeout = CHECK_TIMEOUT_S

    # -- what the learner calls ------------------------------------------------------------------------
    def check(self, workspace_dir: str | os.PathLike | None = None) -> Verdict:
        global _deadline
        begun = time.monotonic()
        _deadline = begun + self.timeout
        observed: list[str] = []
        try:
            mod = self.load(Path(workspace_dir) if workspace_dir else Path("workspace"))
            self.judge(self.run(mod, observed), observed)
            status, message = "passed", self.praise
        except AssertionError as exc:
            status, message = Incorrect.status, str(exc) or "the behaviour does not match the task"
        except Outcome as exc:
            status, message = exc.status, str(exc)
        except CourseError as exc:
            status, message = Uncheckable.status, exc.text().replace("coursekit: ", "", 1)
        finally:
            _deadline = None
        verdict = Verdict(self.id, status, message, observed, time.monotonic() - begun)
        progress.record_check(self.id, status)
        if strict() and status in (Incorrect.status, Uncheckable.status):
            raise AssertionError(repr(verdict))
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
    praise = "Correct."

    def run(self, mod, observed: list[str]):
        raise NotImplementedError

    def judge(self, result, observed: list[str]) -> None:
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------------------
    def hints(self) -> list[str]:
        from .course import exercises

        return exercises().get(self.id, {}).get("hints", [])

    def load(self, folder: Path):
        """Import the learner's module afresh (a re-check sees the latest edit), or say why it cannot be."""
        self.folder = folder.resolve()
        path = folder / f"{self.module}.py"
        if not path.exists():
            raise NotAttempted(f"{path.name} does not exist yet: run the %%writefile cell that creates it")
        source = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            raise Incorrect(f"{path.name}, line {exc.lineno}: syntax error: {exc.msg}") from None
        defined = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.Assign))
                   and hasattr(node, "name")}
        for name in self.functions:
            node = defined.get(name)
            if node is None:
                raise NotAttempted(f"{path.name} has no function {name}() yet")
            first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
            if PLACEHOLDER in "\n".join(source.splitlines()[first - 1:node.end_lineno]):
                raise NotAttempted(f"{name}() still holds the {PLACEHOLDER} placeholder")
        qualified = f"{folder.name}.{self.module}"
        for stale in (qualified, self.module):
            sys.modules.pop(stale, None)
        from celery._state import _get_active_apps

        for app in _get_active_apps():  # the learner's previous version of these tasks: replaced, not duplicated
            for task_name in [n for n in app.tasks if n.startswith(qualified + ".")]:
                del app.tasks[task_name]
        spec = importlib.util.spec_from_file_location(qualified, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = mod
        try:
            spec.loader.exec_module(mod)
        except CourseError:
            raise
        except Exception as exc:
            raise Incorrect(f"importing {path.name} raised {type(exc).__name__}: {exc}") from None
        return mod
