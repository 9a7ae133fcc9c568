"""Chapters 03 on as a learner meets them in JupyterLab: each lesson with Run All (its figures drawn, nothing on
stderr). Their solutions notebooks run headless in strict mode (test_notebooks.py): in the browser they cost about
15 s more each, and a Passed card is the same HTML for every chapter (test_browser.py looks at one). They run in the
browser lanes of tests/parallel.py, each lane's process with its own lab (browser_fixtures.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from browser_fixtures import IN_THE_BROWSER
from labui import Notebook
from lesson_facts import failures

from coursekit import course, facts

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "screenshots"
CHAPTERS = IN_THE_BROWSER
FIGURES = {"05": 1}
"""Figures a lesson draws, where not at least 3: lesson 05 shows where lines went in tables and one grid."""
MAIN_FIGURE = {"05": "stream_map(", "06": 'name="kill lab"', "07": "plots.timeline(recording", "08": 'name="leak"',
               "09": "poolplots.lanes(", "10": 'name="outage timeline"', "11": 'name="two beats"', "12": 'name="tour"',
               "13": 'name="rate limits"'}
"""The cell whose figure is pictured on its own, for a look at the lesson's main plot."""
DRAWN = "img => img.complete && img.naturalWidth > 100 && img.naturalHeight > 100"
"""The source line of the cell that draws a lesson's main figure, pictured as the learner sees it."""


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[ch.stem for ch in CHAPTERS])
def test_lesson_runs_and_draws_every_figure(walled_lab, walls, context, chapter):
    """Run All as a learner of a team Redis (walls.py); then, on the notebook as the browser saved it, every
    sentence the lesson says about its figures and tables (lesson_facts.py), and nothing outside her namespace."""
    lab = walled_lab
    walls.clear()
    lab.new_log_lines()  # lines from before this test are not its own
    nb = Notebook.open(context, lab, f"notebooks/{chapter.stem}.ipynb")
    try:
        nb.run_all(timeout=240)
        nb.page.screenshot(path=str(SHOTS / f"lesson{chapter.id}.png"))
        assert nb.problems() == []
        images = nb.panel.locator(".jp-OutputArea-output img")
        assert images.count() >= FIGURES.get(chapter.id, 3), f"{chapter.stem} showed {images.count()} figures"
        for n in range(images.count()):
            image = images.nth(n)
            image.scroll_into_view_if_needed()  # JupyterLab lays out cells only when they come into view
            assert image.evaluate(DRAWN), f"figure {n + 1} of {chapter.stem} is not drawn"
        if chapter.id in MAIN_FIGURE:
            nb.screenshot(MAIN_FIGURE[chapter.id], SHOTS / f"lesson{chapter.id}-figure.png", outputs_only=True)
        saved = nb.save()
    finally:
        nb.close()  # its kernel and workers end here, pass or fail: the lab serves the next test
    assert lab.new_log_lines() == [], "JupyterLab logged lines a learner would have to decode"
    broken = failures(chapter.stem, "notebooks", facts.read(saved))
    assert not broken, f"{chapter.stem} shows something other than its text says:\n" + "\n".join(broken)
    assert walls.keys() > 0, f"{chapter.stem} left no key on the team Redis: it ran elsewhere"
    assert walls.breaches() == [], f"{chapter.stem} reached outside the learner's namespace"
