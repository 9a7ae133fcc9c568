"""Every notebook the manifest lists runs top to bottom on a fresh kernel, is committed clean, and has the lesson
shape: the interview question in English and Chinese first, a recap last, pointing to its exercises. What a
lesson's text says its figures and tables show is checked on the executed notebook (lesson_facts.py)."""
from __future__ import annotations

import nbformat
import pytest
from lesson_facts import failures
from browser_fixtures import IN_THE_BROWSER

from coursekit import course, facts, runner

LISTED = course.notebooks(("notebooks", "solutions"))
IDS = [f"{path.parent.name}/{path.name}" for _, path in LISTED]
# The lessons run in the browser are run there only (browser_fixtures.IN_THE_BROWSER); every solutions notebook runs
# here, in strict mode (a Passed card in JupyterLab is the same HTML: test_browser.py looks at one).
RUN_HERE = [(ch, path) for ch, path in LISTED if ch not in IN_THE_BROWSER or path.parent.name == "solutions"]


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
    if path.parent.name == "notebooks":
        exercises = f"exercises/{chapter.stem}.ipynb"
        assert chapter.path("exercises").exists() and exercises in last, f"the recap points to {exercises}"
        assert all(f"{call}()" in last for call in ("check", "hint", "solution")), "and says how to use it"


@pytest.mark.notebook
@pytest.mark.parametrize(("chapter", "path"), RUN_HERE, ids=[f"{p.parent.name}/{p.name}" for _, p in RUN_HERE])
def test_notebook_runs_top_to_bottom(chapter, path, redis_url, monkeypatch, request):
    """A lesson runs as a learner of a team Redis, inside her walls (walls.py): the lessons to come keep to them
    too. A solutions notebook runs on the course broker, where every check must pass."""
    lesson = path.parent.name == "notebooks"
    if lesson:
        room = request.getfixturevalue("walls")
        room.clear()
        room.enter(monkeypatch)
    else:
        monkeypatch.setenv("COURSEKIT_STRICT", "1")  # every check in a solution must pass, or the cell raises
    outcome = runner.run(path)
    assert outcome.ok, outcome.line()
    if lesson:
        assert room.keys() > 0, f"{path.name} left no key on the team Redis: it ran elsewhere"
        assert room.breaches() == [], f"{path.name} reached outside the learner's namespace"
    broken = failures(chapter.stem, path.parent.name, facts.read(outcome.notebook))
    assert not broken, f"{path.name} shows something other than its text says:\n" + "\n".join(broken)


# -- notebooks/facilitator.ipynb: not a chapter (course.toml does not list it), a tool for whoever runs a room --
FACILITATOR = course.ROOT / "notebooks" / "facilitator.ipynb"


def test_facilitator_notebook_is_committed_clean():
    nb = nbformat.read(FACILITATOR, as_version=4)
    assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]


@pytest.mark.notebook
@pytest.mark.parametrize("learners", [0, 3], ids=["empty room", "three learners"])
def test_facilitator_notebook_runs_headless(learners, redis_url):
    """Its live table refreshes from a daemon thread, so the run ends with its last cell, within seconds."""
    import redis
    from coursekit import namespace, teamtable

    names = [f"learner{i}" for i in range(learners)]
    for i, name in enumerate(names):  # published under the suite's namespace, as `COURSEKIT_LEARNER` would
        teamtable.publish({"format": 1, "learner": name, "exercises": {}}, redis_url,
                          prefix=f"{namespace.prefix()}{name}:")
    try:
        outcome = runner.run(FACILITATOR)
    finally:
        client = redis.Redis.from_url(redis_url)
        for name in names:
            client.delete(teamtable.key(f"{namespace.prefix()}{name}:"))
        client.close()
    assert outcome.ok and outcome.seconds < 30, outcome.line()
    shown = facts.read(outcome.notebook)
    assert [row["learner"] for row in shown["team"]["rows"]] == names
    assert not failures("facilitator", "notebooks", shown)
