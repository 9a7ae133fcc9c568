"""`make screenshots`: the README's pictures, taken in JupyterLab in chromium from real runs, as the browser tests
take theirs. Usage: python tests/screenshots.py FOLDER

It runs lesson 01 (the live dashboard), lesson 02 (the retries plot) and exercise 00 answered (a verdict card) in a
namespace and state folder of its own, and writes nothing when any cell fails.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Before coursekit is imported anywhere, and inherited by the lab, its kernels and their workers.
STATE = Path(tempfile.mkdtemp(prefix="coursekit-screenshots-"))
os.environ["COURSEKIT_STATE_DIR"] = str(STATE)
os.environ["COURSEKIT_NAMESPACE"] = f"ckshots{os.getpid()}:"

from labui import VIEWPORT, LabServer, Notebook, answer_first_exercise, launch_chromium, missing_browser  # noqa: E402

PICTURES = [
    # (notebook, the code that marks the cell, file name, outputs only)
    ("notebooks/01_calling.ipynb", "ck.live(", "lesson01-dashboard.png", True),
    ("notebooks/02_retries.ipynb", "plots.retries(", "lesson02-retries.png", True),
]


def take(folder: Path) -> list[str]:
    """Take every picture into `folder`; return the problems that stopped it (none: all were written)."""
    from playwright.sync_api import sync_playwright

    lab = LabServer(STATE / "lab").start()
    shots = STATE / "shots"
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context(viewport=VIEWPORT)
            for path, source, name, outputs_only in PICTURES:
                print(f"running {path}", flush=True)
                nb = Notebook.open(context, lab, path)
                nb.run_all()
                if nb.problems():
                    return [f"{path}: {problem}" for problem in nb.problems()]
                nb.screenshot(source, shots / name, outputs_only=outputs_only)
                nb.close()
            print("running exercises/00_setup.ipynb with its answer typed in", flush=True)
            nb = answer_first_exercise(lab, context)
            if nb.problems():
                return [f"exercises/00_setup.ipynb: {problem}" for problem in nb.problems()]
            nb.screenshot("first_task.check()", shots / "verdict-card.png")
            nb.close()
            browser.close()
    finally:
        lab.stop()
    folder.mkdir(parents=True, exist_ok=True)
    for picture in sorted(shots.glob("*.png")):
        shutil.copy(picture, folder / picture.name)
        print(f"wrote {folder / picture.name}")
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/screenshots.py FOLDER", file=sys.stderr)
        return 2
    reason = missing_browser()
    if reason:
        print(f"screenshots: cannot take them here: {reason}", file=sys.stderr)
        return 1
    from coursekit import CourseError, broker, namespace

    try:
        problems = take(Path(argv[0]))
    finally:
        try:
            namespace.reset(broker.current().url)  # this run's namespace only
        except CourseError:  # no broker left: nothing of ours is on one
            pass
        broker.down()  # an embedded Redis started in this run's state folder, if one was
        shutil.rmtree(STATE, ignore_errors=True)
    for problem in problems:
        print(f"screenshots: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
