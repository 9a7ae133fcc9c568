"""The course as a learner meets it: `coursekit lab` (what `make lab` runs), JupyterLab in Debian's chromium, lessons
and an exercise run through the UI with Run All. Screenshots land in tests/screenshots/ (git-ignored).

Without chromium, Playwright or a Chinese font these tests skip and say why; with CI=true they fail instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from labui import FRAME_OF_WIDGET_IMAGES, Notebook, answer_first_exercise, file_browser_names

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "screenshots"


def test_lesson_00_runs_and_the_file_browser_reaches_exercises(lab, context):
    nb = Notebook.open(context, lab, "notebooks/00_setup.ipynb")
    nb.run_all()
    nb.page.screenshot(path=str(SHOTS / "lesson00.png"))
    assert nb.problems() == []
    # The kernel inherited the test's environment: the lesson ran in this test process's namespace.
    assert f"namespace: {os.environ['COURSEKIT_NAMESPACE']}" in nb.cell_with('print("namespace:"').text_content()

    names = file_browser_names(nb.page)
    assert {"exercises", "notebooks", "solutions", "README.md"} <= set(names), names
    nb.page.locator(".jp-DirListing-item", has_text="exercises").dblclick()
    nb.page.locator(".jp-DirListing-itemText", has_text="02_retries.ipynb").wait_for(timeout=30_000)
    nb.page.screenshot(path=str(SHOTS / "file-browser-exercises.png"))
    nb.close()
    assert lab.new_log_lines() == [], "JupyterLab logged lines a learner would have to decode"


def test_lesson_01_live_dashboard_draws_and_changes(lab, context):
    nb = Notebook.open(context, lab, "notebooks/01_calling.ipynb")
    frames: list[dict] = []
    nb.run_all(while_running=lambda page: frames.extend(page.evaluate(FRAME_OF_WIDGET_IMAGES)))
    nb.screenshot("ck.live(", SHOTS / "lesson01-dashboard.png")
    assert nb.problems() == []
    drawn = [f for f in frames if f["width"] and f["height"] and f["colours"] > 2]
    assert drawn, f"the dashboard's image was never drawn while the lesson ran ({len(frames)} looks: {frames[:3]})"
    assert len({f["digest"] for f in drawn}) >= 2, \
        f"the dashboard's image never changed while tasks ran ({len(drawn)} looks at a drawn image, all alike)"
    nb.close()
    assert lab.new_log_lines() == [], "JupyterLab logged lines a learner would have to decode"


def test_exercise_check_renders_a_verdict_card(lab, context):
    nb = answer_first_exercise(lab, context)
    card = nb.cell_with("first_task.check()").locator(".jp-OutputArea-output.jp-RenderedHTML")
    nb.screenshot("first_task.check()", SHOTS / "exercise-verdict.png")
    assert nb.problems() == []
    assert card.count() == 1, "check() showed no HTML verdict card"
    assert card.text_content().strip().startswith("Passed"), card.text_content()
    nb.close()
    assert lab.new_log_lines() == [], "JupyterLab logged lines a learner would have to decode"
