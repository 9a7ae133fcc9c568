"""Learners' modules for the check tests, built from the solutions notebooks (the single source)."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from coursekit import course
from coursekit.build import WRITEFILE


def solution_module(module: str) -> str:
    """The text of workspace/<module>.py as the solutions notebook writes it, answer markers removed."""
    for chapter in course.chapters():
        path = chapter.path("solutions")
        if not path.exists():
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            first, _, body = cell.source.partition("\n")
            m = WRITEFILE.match(first)
            if cell.cell_type == "code" and m and Path(m.group(1)).stem == module:
                return re.sub(r"\n\s*# (ANSWER: .*|END ANSWER)", "", body) + "\n"
    raise LookupError(f"no %%writefile cell for workspace/{module}.py in solutions/")


def swap(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced; fails loudly when the solution no longer holds `old`."""
    assert old in source, f"the solution no longer contains {old!r}: update the test"
    return source.replace(old, new)


def attempt(ws: Path, exercise, source: str):
    """Write the module as a learner's %%writefile cell would, and check the exercise."""
    (ws / f"{exercise.module}.py").write_text(source)
    return exercise.check(ws)


S00, S01, S02 = (solution_module(m) for m in ("ex00_first", "ex01_calling", "ex02_retries"))
S03_ROUTING, S03_PREFETCH, S03_BURST = (solution_module(m) for m in ("ex03_routing", "ex03_prefetch", "ex03_burst"))
S04U, S04R, S04T = (solution_module(m) for m in ("ex04_urgent", "ex04_rabbitmq", "ex04_tiers"))
