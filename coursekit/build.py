"""`coursekit build`: exercises/NN_topic.ipynb generated from solutions/NN_topic.ipynb, the single source.

In a solution, each answer sits between `# ANSWER: <what to write>` and `# END ANSWER`. The exercise keeps the
comment and replaces the answer with a `____` placeholder (`return ____` when the answer returns, `@____` when it
is a decorator), which the checker reads as "not attempted". Outputs are cleared.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from .course import chapters
from .errors import CourseError
from .learner import Source

BEGIN = re.compile(r"^(?P<indent>\s*)# ANSWER: (?P<what>.+)$")
END = re.compile(r"^\s*# END ANSWER\s*$")
WRITEFILE = re.compile(r"^%%writefile\s+(\S+)")


def stub_source(source: str) -> str:
    out, inside, answer = [], None, []
    for number, line in enumerate(source.splitlines(), 1):
        if inside is None and (m := BEGIN.match(line)):
            inside, answer = m, []
            out.append(f"{m['indent']}# TODO: {m['what']}")  # the learner's instruction
        elif inside is not None and END.match(line):
            returns = any(a.strip().startswith("return") for a in answer)
            decorator = bool(answer) and answer[0].strip().startswith("@")
            out.append(f"{inside['indent']}{'@' if decorator else 'return ' if returns else ''}____")
            inside = None
        elif inside is not None:
            answer.append(line)
        else:
            out.append(line)
    if inside is not None:
        raise CourseError(f"an `# ANSWER:` block has no `# END ANSWER` ({inside['what']!r})",
                          fix="close every answer block in the solutions notebook")
    return "\n".join(out)


def answers(source: str) -> list[str]:
    """The answer lines of every block in `source` (for the leak test)."""
    found, inside = [], False
    for line in source.splitlines():
        if BEGIN.match(line):
            inside = True
        elif END.match(line):
            inside = False
        elif inside and line.strip():
            found.append(line.strip())
    return found


def exercise_notebook(solution: Path):
    nb = nbformat.read(solution, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source)
            cell.outputs, cell.execution_count = [], None
    return nb


def build(root: Path | None = None) -> list[Path]:
    written = []
    for ch in chapters():
        solution = ch.path("solutions")
        if solution.exists():
            target = ch.path("exercises")
            target.parent.mkdir(exist_ok=True)
            nbformat.write(exercise_notebook(solution), target)
            written.append(target)
    return written


MARKERS = re.compile(r"\n\s*# (ANSWER: .*|END ANSWER)")


def written_modules(solution: Path):
    """(path the %%writefile cell names, the text it writes) for each such cell of a solutions notebook."""
    for cell in nbformat.read(solution, as_version=4).cells:
        first, _, body = cell.source.partition("\n")
        m = WRITEFILE.match(first)
        if cell.cell_type == "code" and m:
            yield Path(m.group(1)), body


def module_text(module: str, chapter=None) -> str:
    """workspace/<module>.py as the solutions notebook (of `chapter`, else of any chapter) writes it, answer
    markers removed: what a learner who solved every exercise in it has on disk."""
    for ch in [chapter] if chapter else chapters():
        if ch.path("solutions").exists():
            for path, body in written_modules(ch.path("solutions")):
                if path.stem == module:
                    return MARKERS.sub("", body) + "\n"
    raise CourseError(f"no %%writefile cell for workspace/{module}.py in solutions/",
                      fix="restore the solutions notebooks from git")


def solution_of(exercise) -> str:
    """The solution's code for `exercise`'s functions, read from its chapter's solutions notebook."""
    chapter = next(ch for ch in chapters() if ch.id == exercise.id.split(".")[0])
    for path, body in written_modules(chapter.path("solutions")):
        if path.stem == exercise.module:
            source = Source(path, body, ast.parse(body))
            # the exercise's functions (decorators included), the module-level names it names itself
            # (`SETTINGS = {...}`), and the module-level names its functions use that hold an answer too
            used = {n for name in exercise.functions for n in source.closure(name)}

            def shown(node) -> bool:
                if isinstance(node, ast.FunctionDef):
                    return node.name in exercise.functions
                bound = {n for n, nodes in source.bindings.items() if node in nodes}
                return bool(bound & set(exercise.functions)) or ("# ANSWER: " in source.segment(node)
                                                                 and bool(used & bound))

            parts = [source.segment(node) for node in source.tree.body if shown(node)]
            return "\n\n".join(MARKERS.sub("", p) for p in parts)
    raise CourseError(f"no %%writefile cell for workspace/{exercise.module}.py in {chapter.path('solutions').name}")
