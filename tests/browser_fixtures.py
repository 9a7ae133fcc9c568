"""The fixtures of a browser test module: chromium, JupyterLab served from a copy of the repository (as `make lab`
does), and a fresh browser context per test. Each module that imports them gets a lab of its own, so two
modules' browser tests run side by side on two of the suite's processes."""
from __future__ import annotations

import pytest
from labui import VIEWPORT, LabDidNotStart, LabServer, launch_chromium, missing_browser
from required import missing


@pytest.fixture(scope="module")
def chromium():
    reason = missing_browser()
    if reason:
        missing(f"the browser tests cannot run: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(chromium, redis_url, tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("lab"))
    try:
        server.start()
    except LabDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def context(chromium, lab):
    context = chromium.new_context(viewport=VIEWPORT)
    yield context
    context.close()
