"""Every notebook the manifest lists runs top to bottom on a fresh kernel, is committed clean, and has the lesson
shape: the interview question in English and Chinese first, a recap last."""
from __future__ import annotations

import nbformat
import pytest

from coursekit import course, runner

LISTED = course.notebooks(("notebooks", "solutions"))
IDS = [f"{path.parent.name}/{path.name}" for _, path in LISTED]


def test_every_chapter_has_its_lesson():
    missing = [ch.stem for ch in course.chapters() if not ch.path("notebooks").exists()]
    assert not missing, f"chapters in course.toml without notebooks/NN_slug.ipynb: {missing}"


@pytest.mark.parametrize(("chapter", "path"), LISTED, ids=IDS)
def test_notebook_is_committed_clean(chapter, path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells, 1) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize(("chapter", "path"), LISTED, ids=IDS)
def test_lesson_shape(chapter, path):
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0].source, nb.cells[-1].source
    assert first.startswith(f"# {chapter.id} ")
    assert chapter.question in first and chapter.question_zh in first, "opens with the interview question (EN+ZH)"
    assert "Recap" in last and "interview" in last
    assert any("Predict" in c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.notebook
@pytest.mark.parametrize(("chapter", "path"), LISTED, ids=IDS)
def test_notebook_runs_top_to_bottom(chapter, path, redis_url, monkeypatch):
    if path.parent.name == "solutions":
        monkeypatch.setenv("COURSEKIT_STRICT", "1")  # every check in a solution must pass, or the cell raises
    outcome = runner.run(path)
    assert outcome.ok, outcome.line()
