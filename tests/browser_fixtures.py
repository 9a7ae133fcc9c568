"""The fixtures of the browser tests: chromium, JupyterLab served from a copy of the repository (as `make lab`
does), and a fresh browser context per test (conftest.py imports them). Chromium and the lab are started once per
test process that runs a browser test (session scope); the browser tests run in two lanes, one test at a time in
each (parallel.BROWSER_LANES), so that no more than two chromiums and labs load the machine at once."""
from __future__ import annotations

import os

import pytest
from labui import VIEWPORT, LabDidNotStart, LabServer, launch_chromium, missing_browser
from required import missing

from coursekit import course

BROWSER_LESSONS = os.environ.get("COURSEKIT_BROWSER_LESSONS", "06,09,13")
IN_THE_BROWSER = [ch for ch in course.chapters()
                  if ch.id >= "03" and (BROWSER_LESSONS == "all" or ch.id in BROWSER_LESSONS.split(","))]
"""Chapters whose lesson tests/test_browser_chapters.py runs in JupyterLab (00-02 have their own tests in
test_browser.py). Their lessons are not run a second time on a bare kernel (test_notebooks.py): the lesson's facts
and walls are checked on the notebook as the browser saved it. Their solutions run on a bare kernel only.

Three lessons, not all: in the browser a lesson took 44-114 s of test time (825 s for lessons 03-13 on CI, at
loads up to 20), on a bare kernel 15-30 s, and every lesson from 03 on shows only figures and tables, which
JupyterLab draws the same way for each. The three are the ones with the most to go wrong on a page: 06 kills
workers under the kernel's feet, 09 draws the most figures, 13 is the newest. The others run in
test_notebooks.py, with the same facts and walls. `make test-browser` runs every lesson in the browser
(COURSEKIT_BROWSER_LESSONS=all; or a list of ids, e.g. 04,10)."""


@pytest.fixture(scope="session")
def chromium():
    reason = missing_browser()
    if reason:
        missing(f"the browser tests cannot run: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def _serve(folder, env: dict | None = None):
    """A started LabServer in `folder`, stopped when the session ends; a lab that does not start fails the test."""
    server = LabServer(folder, env=env)
    try:
        server.start()
    except LabDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lab(chromium, redis_url, tmp_path_factory):
    yield from _serve(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def walled_lab(chromium, walls, tmp_path_factory):
    """A lab whose kernels work for the learner of `walls` (walls.py), on the team Redis: the lessons run in the
    browser there, so one run shows what a learner sees and proves the lesson keeps inside her namespace."""
    yield from _serve(tmp_path_factory.mktemp("walled-lab"), walls.environment())


@pytest.fixture
def context(chromium):
    context = chromium.new_context(viewport=VIEWPORT)
    yield context
    context.close()
