"""The drill notebook as a learner meets it in JupyterLab: Run All shows the first question with its countdown;
answering through the widget runs the experiment and shows predicted against observed."""
from __future__ import annotations

from pathlib import Path

import pytest
from labui import Notebook

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent / "screenshots"


def test_drill_notebook_in_the_browser(lab, context):
    lab.new_log_lines()
    nb = Notebook.open(context, lab, "notebooks/14_drill.ipynb")
    try:
        nb.run_all(timeout=120)
        assert nb.problems() == []
        widget = nb.cell_with("ui = drill_ui(")
        widget.locator("text=s left").first.wait_for(timeout=10_000)  # the countdown is running
        radios = widget.locator("input[type=radio]")
        if radios.count():
            radios.first.check()
        else:  # a typed answer: the placeholder of an order question names the tasks to put in order
            box = widget.locator("input[type=text]").first
            hint = box.get_attribute("placeholder") or ""
            box.fill(hint.split("e.g. ", 1)[1] if "e.g. " in hint else "1")
        widget.locator("button", has_text="Answer").click()
        widget.locator("text=the worker did").wait_for(timeout=30_000)
        nb.screenshot("ui = drill_ui(", SHOTS / "drill.png")
        shown = widget.inner_text()
        assert "you predicted" in shown and ("RIGHT" in shown.upper() or "WRONG" in shown.upper())
    finally:
        nb.close()
    assert lab.new_log_lines() == [], "JupyterLab logged lines a learner would have to decode"
