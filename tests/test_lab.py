"""`coursekit lab`, the command behind `make lab`: what it serves, and one clear line for each kind of bad input.
No browser needed: these talk to the server's REST API or only read what the command prints."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit import probe
from labui import LabDidNotStart, LabServer

COURSEKIT = str(Path(sys.executable).with_name("coursekit"))


def run_lab(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    jupyter = {f"JUPYTER_{kind}_DIR": str(tmp_path / kind.lower()) for kind in ("RUNTIME", "CONFIG", "DATA")}
    return subprocess.run([COURSEKIT, "lab", "--no-browser", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **jupyter, **env))


def test_lab_serves_the_repository_root_and_says_only_the_broker_and_the_url(tmp_path, redis_url):
    lab = LabServer(tmp_path, copy=False).start()
    try:
        listing = {item["name"] for item in lab.api("GET", "/api/contents/")["content"]}
        lesson = lab.api("GET", "/api/contents/notebooks/00_setup.ipynb?content=0")
    finally:
        lab.stop()
    assert {"notebooks", "exercises", "solutions", "README.md"} <= listing, listing
    assert lesson["type"] == "notebook"
    assert lab.url == f"http://127.0.0.1:{lab.port}/lab/tree/notebooks/00_setup.ipynb?token={lab.token}"
    assert lab.process.returncode is not None

    said = lab.lines[:next(i for i, line in enumerate(lab.lines) if "JupyterLab for Celery Lab:" in line)]
    assert said[0].startswith("broker: redis://"), lab.lines
    # As root JupyterLab needs --allow-root: coursekit adds it and says so in one line.
    root_note = ["note: running as root, so JupyterLab gets --allow-root (normal in a container; on a shared "
                 "machine, run as your own user)"]
    assert said[1:] == (root_note if os.geteuid() == 0 else []), lab.lines
    url_line = next(line for line in lab.lines if "JupyterLab for Celery Lab:" in line)
    assert f"(serving {lab.root}; Ctrl-C stops it)" in url_line, url_line  # which checkout a learner is in


def test_lab_on_a_taken_port_says_so_in_one_line(tmp_path, redis_url, taken_port):
    done = run_lab(tmp_path, f"--port={taken_port}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"port {taken_port} is already in use" in done.stderr and "PORT=" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_lab_without_a_broker_says_so_in_one_line(tmp_path):
    done = run_lab(tmp_path, COURSEKIT_BROKER_URL=f"redis://127.0.0.1:{probe.free_port()}/0")
    assert done.returncode == 2
    assert done.stdout == ""  # it stopped before starting anything
    assert done.stderr.count("\n") == 1, done.stderr
    assert "COURSEKIT_BROKER_URL" in done.stderr and "Fix:" in done.stderr


def test_a_lab_that_cannot_start_stops_the_browser_tests_with_one_line(tmp_path, redis_url, taken_port):
    with pytest.raises(LabDidNotStart) as failed:
        LabServer(tmp_path, port=taken_port, copy=False).start()
    assert "\n" not in str(failed.value)
    assert f"port {taken_port} is already in use" in str(failed.value)
