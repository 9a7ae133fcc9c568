"""The learner's module, read and loaded for a check in a way that can neither stall the check nor break it.

1. `Source` reads and parses the file. Whether an exercise is attempted is decided from the definitions of that
   exercise's own names, in any form (`def`, `name = app.task(fn)`, a decorated def, an import), and of the
   module's functions they use: a `____` left there means "not attempted".
2. `Preflight` imports the module in a process of its own, bounded in time. A module that blocks at import (a
   `.get()` or a polling loop at the bottom) is stopped there, and faulthandler's dump names the line it was stuck
   on.
3. `load` imports it into the checking process, for the check to call.

Wherever the module runs for a check (the preflight, this process, the check's worker through
`coursekit.checks.host`), `____` is bound in the module's own namespace to `BLANK`, a harmless stand-in. So a blank
left in another exercise of the same module never raises at import (an `@____` decorator returns the function
unchanged), while "not attempted" is still read from the source text of the exercise's own definitions. Binding it
in the module, not in builtins, changes nothing for any other code in the process.
"""
from __future__ import annotations

import ast
import atexit
import faulthandler
import gc
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import forkserver

PLACEHOLDER = "____"


class Blank:
    """`____` while a check loads a module: a decorator that changes nothing, a value that is only itself."""

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return self

    def __repr__(self) -> str:
        return PLACEHOLDER


BLANK = Blank()


def qualified_name(path: Path) -> str:
    """The module's name for Celery: `workspace.ex01_calling`, so task names match in every process."""
    return f"{path.parent.name}.{path.stem}"


def execute(path: Path, name: str):
    """Run the module file as module `name`, with `____` bound to BLANK in its namespace."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    vars(mod)[PLACEHOLDER] = BLANK
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


# -- where in the learner's file ------------------------------------------------------------------------------
_LOG_RECORD = re.compile(r"\[\d{4}-\d\d-\d\d ")
"""The start of a worker's log record: `[2025-01-31 12:00:00,000: ERROR/MainProcess] ...`."""
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)(?:,)? in (?P<func>\S+)')


def frames_in(text: str, path: Path) -> list[tuple[int, str]]:
    """(line, function) of every frame of `path` in a traceback or faulthandler dump, outermost first."""
    target = str(Path(path).resolve())
    return [(int(m["line"]), m["func"]) for m in _FRAME.finditer(text or "")
            if str(Path(m["file"]).resolve()) == target]


def stopped_by(log: str, source: "Source") -> str:
    """Why a worker that loads the learner's module stopped, from its log: the exception that ended the last
    traceback, all its lines (Celery's explain over several), else the last unindented line; then where in the
    learner's file, when the traceback passed through it: `ImproperlyConfigured: ..., at line 8 (`...`)`."""
    lines = (log or "").splitlines()
    begun = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
                default=None)
    what = ""
    if begun is not None:
        raised = next((i for i in range(begun + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), None)
        if raised is not None:
            ends = next((i for i in range(raised + 1, len(lines)) if _LOG_RECORD.match(lines[i])), len(lines))
            what = " ".join(" ".join(lines[raised:ends]).split())
    if not what:
        what = next((line for line in reversed(lines) if line and not line.startswith(" ")), "")
    frames = frames_in(log, source.path)
    where = source.where(frames[-1][0]) if frames else ""
    return what + (f", at {where}" if what and where else "")


def raised_at(exc: BaseException, path: Path) -> int | None:
    """The line of `path` nearest to where `exc` was raised, or None when the learner's file is not involved."""
    target = str(Path(path).resolve())
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if str(Path(f.filename).resolve()) == target]
    return lines[-1] if lines else None


@dataclass
class Source:
    """The learner's file, parsed once."""

    path: Path
    text: str
    tree: ast.Module

    @classmethod
    def read(cls, path: Path) -> "Source":
        """Raises FileNotFoundError, or SyntaxError (with its line)."""
        text = path.read_text(encoding="utf-8")
        return cls(path, text, ast.parse(text, filename=str(path)))

    def line(self, number: int | None) -> str:
        lines = self.text.splitlines()
        return lines[number - 1].strip() if number and 0 < number <= len(lines) else ""

    def where(self, number: int | None) -> str:
        """`line 12 (`return add.delay(x, y).get()`)`, or "" when there is no line."""
        if not number:
            return ""
        text = self.line(number)
        return f"line {number}" + (f" (`{text}`)" if text else "")

    # -- what the module defines, statically ----------------------------------------------------------------
    @cached_property
    def bindings(self) -> dict[str, list[ast.stmt]]:
        """Top-level name -> the statements that bind it (looking inside top-level if/try/with blocks too)."""
        found: dict[str, list[ast.stmt]] = {}

        def visit(statements):
            for node in statements:
                names: list[str] = []
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names = [node.name]
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [(a.asname or a.name).split(".")[0] for a in node.names]
                for name in names:
                    found.setdefault(name, []).append(node)
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    for block in ("body", "orelse", "finalbody", "handlers"):  # if/try/with/for at top level
                        visit(getattr(node, block, []) or [])

        visit(self.tree.body)
        return found

    def segment(self, node: ast.stmt) -> str:
        first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
        return "\n".join(self.text.splitlines()[first - 1:node.end_lineno])

    def closure(self, name: str) -> list[str]:
        """`name` and the module-level names its definitions use, directly or not: functions
        (`multiply = app.task(product)` uses product) and assignments (`countdown=DELAY` uses DELAY)."""
        bindings = self.bindings
        todo, seen = [name], []
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.append(current)
            for node in bindings.get(current, []):
                used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                todo += sorted(u for u in used if any(not isinstance(b, (ast.Import, ast.ImportFrom))
                                                      for b in bindings.get(u, [])))
        return seen

    def holds_placeholder(self, name: str) -> bool:
        """Whether a definition of `name` itself (not an import) contains `____`."""
        return any(PLACEHOLDER in self.segment(node) for node in self.bindings.get(name, [])
                   if not isinstance(node, (ast.Import, ast.ImportFrom)))

    def blank(self, name: str) -> bool:
        """Whether `name`, or a module-level name it uses, still holds the placeholder."""
        return any(self.holds_placeholder(n) for n in self.closure(name))

    def blanks(self) -> list[str]:
        """Every top-level function or assignment of the module that itself still holds the placeholder."""
        return [name for name, nodes in self.bindings.items() if name != PLACEHOLDER and any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign)) for n in nodes)
            and self.holds_placeholder(name)]

    def definition_line(self, name: str) -> int | None:
        nodes = self.bindings.get(name)
        if not nodes:
            return None
        node = nodes[-1]
        return min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])


# -- preflight: import it in a process of its own, with a time bound ----------------------------------------
@dataclass
class Imported:
    """What the preflight saw: the names the module defines, or the error it raised, or where it hung."""

    names: list[str] = field(default_factory=list)
    error: str = ""
    message: str = ""
    course_error: bool = False
    line: int | None = None
    hung: bool = False
    ended: bool = False
    """The process ended before the import finished, with no report: os._exit() at import, a crash, a signal."""
    seconds: float = 0.0


DUMP_GRACE_S = 1.0
"""After its deadline the preflight has this long to write faulthandler's dump and exit before it is killed."""


class Preflight:
    """The learner's module imported in a process of its own, started now and read with `result()`; it runs while
    the check's worker boots. The process is forked from a server that has imported Celery and coursekit already
    (forkserver.py); the module itself is imported afresh in each."""

    def __init__(self, path: Path, name: str, bound: float, env: dict | None = None):
        self.path, self.bound = Path(path), bound
        self._out = tempfile.NamedTemporaryFile(prefix="coursekit-preflight-", suffix=".json", delete=False)
        self._err = tempfile.NamedTemporaryFile(prefix="coursekit-preflight-", suffix=".err", delete=False)
        self._out.close()
        self._err.close()
        self.begun = time.monotonic()
        self.deadline = self.begun + bound
        # CLOCK_MONOTONIC is one clock for every process: the child arms its dump for this same instant, however
        # long it takes to start on a busy machine
        self.child = forkserver.start("coursekit.learner:_preflight_child", str(self.path), name, self.deadline,
                                      self._out.name, self._err.name, str(self.path.parent.parent),
                                      {**os.environ, **(env or {})})

    def result(self) -> Imported:
        """Wait for the import to end, or for the dump at the deadline (plus a moment to write it)."""
        ended_early = self.child.wait(self.deadline - time.monotonic()) and time.monotonic() < self.deadline
        if not ended_early:
            self.child.wait(self.deadline + DUMP_GRACE_S - time.monotonic())  # the dump, written at the deadline
        seconds = time.monotonic() - self.begun
        self.kill()
        try:
            report = json.loads(Path(self._out.name).read_text() or "{}")
        except (OSError, ValueError):
            report = {}
        # gone now, not at close(): a check that runs out of its time never closes its session (its thread is
        # still inside the learner's code), and every `make test` left one file in /tmp that way
        Path(self._out.name).unlink(missing_ok=True)
        try:
            dump = "" if report else Path(self._err.name).read_text(errors="replace")
        except OSError:
            dump = ""
        Path(self._err.name).unlink(missing_ok=True)
        if report:
            return Imported(seconds=seconds, **report)
        if ended_early:
            return Imported(ended=True, seconds=seconds, message=dump[-2000:])
        frames = frames_in(dump, self.path)
        module_level = [line for line, func in frames if func == "<module>"]
        line = module_level[-1] if module_level else frames[-1][0] if frames else None
        return Imported(hung=True, line=line, seconds=seconds, message=dump[-2000:])

    def kill(self) -> None:
        """SIGKILL the preflight and whatever it started (its session), and wait until it has ended."""
        self.child.kill()
        self.child.wait(5)

    def close(self) -> None:
        self.kill()
        self.child.close()
        for name in (self._out.name, self._err.name):
            try:
                os.unlink(name)
            except OSError:
                pass


def _preflight_child(path: str, name: str, deadline: float, out: str, err: str, cwd: str, env: dict) -> None:
    """In the forked process (stdin and stdout on /dev/null already): become what `python -m coursekit.learner`
    started in `cwd` with `env` was (a session of its own, stderr to the `err` file, the same import path and
    argv), then import."""
    os.setsid()
    with open(err, "ab") as errors:
        os.dup2(errors.fileno(), 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # as `python -m` in `cwd` would have it: cwd first, then PYTHONPATH, then the interpreter's own (site) path
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    site_path = [p for p in sys.path[1:] if p not in python_path]  # sys.path[0]: the server's start folder
    sys.path[:] = list(dict.fromkeys([cwd, *python_path, *site_path]))
    sys.argv = [str(Path(__file__)), path, name, f"{deadline:.3f}", out]
    _preflight_main([path, name, f"{deadline:.3f}", out])


def _preflight_main(argv: list[str]) -> None:
    """In the preflight's process: import, then write what happened as JSON and leave at once (os._exit), so that
    threads the module started and objects it left cannot keep the process alive or print at exit."""
    path, name, deadline, out = Path(argv[0]), argv[1], float(argv[2]), argv[3]
    # the stack of a module stuck at import, to stderr, at the parent's deadline
    faulthandler.dump_traceback_later(max(0.1, deadline - time.monotonic()), exit=True)
    from .errors import CourseError

    try:
        mod = execute(path, name)
        report = {"names": sorted(k for k in vars(mod) if not k.startswith("__"))}
    except BaseException as exc:  # the learner's module raised at import: that is what we report
        report = {"error": type(exc).__name__, "message": str(exc)[:500], "line": raised_at(exc, path),
                  "course_error": isinstance(exc, CourseError)}
    faulthandler.cancel_dump_traceback_later()
    Path(out).write_text(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)


# -- load it here ---------------------------------------------------------------------------------------------
_loaded: "weakref.WeakSet" = weakref.WeakSet()
_exit_hook = False


def _forget_loaded() -> None:
    """At exit, while the interpreter still works, drop what learners' modules hold. An AsyncResult left in one
    (`r = add.delay(1, 2)` at the bottom) unsubscribes from Redis when it is collected; collected during shutdown
    that fails, and Python prints "Exception ignored in AsyncResult.__del__"."""
    for mod in list(_loaded):
        vars(mod).clear()
    gc.collect()


def load(path: Path, name: str, bound: float):
    """Import the module into this process, in a thread bounded by `bound` seconds. Returns the module, or raises
    what it raised, or TimeoutError when it did not finish (the thread is left behind: nothing can stop it)."""
    global _exit_hook
    if not _exit_hook:
        atexit.register(_forget_loaded)  # registered after Celery's own handlers, so it runs before them
        _exit_hook = True
    sys.modules.pop(name, None)
    box: dict = {}

    def target():
        try:
            box["module"] = execute(path, name)
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="coursekit-learner-import")
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        raise TimeoutError(f"importing {path.name} did not finish within {bound:.0f} s")
    if "error" in box:
        raise box["error"]
    _loaded.add(box["module"])
    return box["module"]


if __name__ == "__main__":
    _preflight_main(sys.argv[1:])
