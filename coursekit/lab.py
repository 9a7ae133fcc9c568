"""`coursekit lab`: JupyterLab for the course, rooted at the repository and opened at the first lesson.

`make lab` runs this, and so do the browser tests, so that what the tests see is what a learner gets. It resolves
the broker first, checks the port, then runs `jupyter lab` as a child with the settings below and prints one line
with the URL (token included) once the server answers. JupyterLab's own log is kept to warnings and errors, and
each warning it printed (at start, when a notebook opened, when a kernel started) is removed at its cause below.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

from . import broker, probe, state
from .course import ROOT
from .errors import CourseError

FIRST_LESSON = "notebooks/00_setup.ipynb"
DEFAULT_PORT = 8888
READY_TIMEOUT_S = 60.0
"""JupyterLab answers in about 2 s here; a minute covers a cold disk on a slow laptop."""

SERVER_CONFIG = {
    "ServerApp": {
        "ip": "127.0.0.1",
        # coursekit opens the browser itself once the server answers, and only where a desktop browser exists.
        "open_browser": False,
        # The port coursekit checked is the port served; JupyterLab would otherwise move on to another one quietly.
        "port_retries": 0,
        # The INFO lines are for Jupyter's developers; coursekit prints the URL, the one line a learner needs.
        "log_level": "WARN",
        # One Ctrl-C stops the server, instead of a y/n question with a 5 s timeout.
        "answer_yes": True,
        "tornado_settings": {
            # jupyter_server asks for a 90 s ping timeout, longer than its 30 s ping interval: tornado warns and
            # uses 30 s. Ask for 30 s.
            "ws_ping_timeout": 30000,
            # No JupyterLab build ever happens here (only prebuilt extensions): skip the check and its dialog.
            "page_config_data": {"buildCheck": False, "buildAvailable": False},
        },
    },
    "MappingKernelManager": {
        # Kernels listen on loopback TCP; with keys the server provisions (CurveZMQ), that traffic is encrypted
        # and the kernel has no "running over TCP without encryption" warning to print.
        "transport_encryption": "auto",
    },
    "LabApp": {
        "log_level": "WARN",  # its own logger, with the same INFO lines as the server's
        # News, update checks and a PyPI-backed extension manager fetch from the internet: on a closed network
        # each waits for its timeout, and none of them is part of the course.
        "news_url": None,
        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "extension_manager": "readonly",
    },
}

LAB_SETTINGS = {
    # Defaults for JupyterLab's settings (a learner can still change them): no prompt about fetching Jupyter news.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def write_config() -> Path:
    """Write SERVER_CONFIG and LAB_SETTINGS where JupyterLab reads them; return the config file to pass it."""
    import zmq

    (state.state_dir() / "jupyter" / "settings").mkdir(parents=True, exist_ok=True)
    config = dict(SERVER_CONFIG, LabApp={**SERVER_CONFIG["LabApp"],
                                         "app_settings_dir": str(state.state_dir() / "jupyter" / "settings")})
    if not zmq.has("curve"):  # a libzmq built without it: asking for encryption would stop the server
        del config["MappingKernelManager"]
    state.write("jupyter/settings/overrides.json", LAB_SETTINGS)
    state.write("jupyter/jupyter_lab_config.json", config)
    return state.state_dir() / "jupyter" / "jupyter_lab_config.json"


def url(port: int, token: str, path: str = FIRST_LESSON) -> str:
    return f"http://127.0.0.1:{port}/lab/tree/{path}?token={token}"


def _answers(port: int, token: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                                     headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def running_lab(root: Path) -> dict | None:
    """A JupyterLab already serving `root` for this user, from the files Jupyter keeps in its runtime folder."""
    from jupyter_core.paths import jupyter_runtime_dir

    import psutil

    for info_file in Path(jupyter_runtime_dir()).glob("jpserver-*.json"):
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        if Path(info.get("root_dir", "")).resolve() == root.resolve() and psutil.pid_exists(info.get("pid", -1)) \
                and _answers(info["port"], info["token"]):
            return info
    return None


def choose_port(port: int | None) -> int:
    """The port asked for, when it is free; without one, 8888 or else any free port."""
    if port is None:
        return DEFAULT_PORT if not probe.port_open(DEFAULT_PORT) else probe.free_port()
    if probe.port_open(port):
        owner = probe.port_owner(port)
        raise CourseError(f"port {port} is already in use{f' by {owner}' if owner else ''}",
                          fix=f"stop that program, or pick another port (make lab PORT={probe.free_port()})")
    return port


def sign_course_notebooks(root: Path) -> None:
    """Sign the course's notebooks that hold no outputs, so that opening one logs no 'not trusted' warning.

    Trust only decides whether saved outputs (HTML, JavaScript) are shown when a notebook opens. A notebook without
    outputs has nothing to trust, so signing it changes nothing a learner sees; a notebook that holds outputs is
    left as it is."""
    from nbformat import from_dict
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    for folder in ("notebooks", "exercises", "solutions"):
        for path in sorted((root / folder).glob("*.ipynb")):
            try:  # plain JSON: nbformat's schema validation would cost a second at every start
                nb = from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # a damaged notebook: JupyterLab itself will say what is wrong with it
            if any(cell.get("outputs") for cell in nb.cells) or notary.check_signature(nb):
                continue
            notary.sign(nb)


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent dies: `coursekit lab` follows make or a test, and JupyterLab follows
    `coursekit lab` (the signal fires when the spawning thread ends: here, the main thread, which lives longest)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _desktop_browser() -> bool:
    """True where a graphical browser can open; in a bare terminal, webbrowser would start lynx in it."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(port: int | None = None, open_browser: bool = True, root: Path = ROOT, say=print) -> int:
    """Run JupyterLab for the course until it stops, and return its exit code. Bad input raises CourseError."""
    owner = os.getppid()
    _die_with_parent()
    if os.getppid() != owner:  # it died before we asked to follow it
        raise SystemExit(1)
    found = broker.up()
    say(f"broker: {found.describe()}")
    already = running_lab(root)
    if already is not None and port in (None, already["port"]):
        say(f"JupyterLab for this course already runs (pid {already['pid']}): "
            f"{url(already['port'], already['token'])}")
        return 0
    port = choose_port(port)
    flags = [f"--port={port}", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--allow-root")
        say("note: running as root, so JupyterLab gets --allow-root (normal in a container; on a shared "
            "machine, run as your own user)")
    config = write_config()
    token = secrets.token_hex(24)
    # The token goes by environment, not argv, where `ps` would show it to every user of the machine.
    env = dict(os.environ, JUPYTER_TOKEN=token)
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", f"--config={config}", *flags], env=env,
                           cwd=root, preexec_fn=_die_with_parent)
    # Ctrl-C reaches JupyterLab too (same process group) and stops it; we wait for it to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: lab.terminate())
    sign_course_notebooks(root)  # while JupyterLab starts: importing nbformat alone takes a second here
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _answers(port, token):
        if lab.poll() is not None:
            raise CourseError(f"JupyterLab stopped (exit code {lab.returncode}) before it served on port {port}",
                              fix="read its message just above; `coursekit doctor` checks the installation")
        if time.monotonic() > deadline:
            lab.terminate()
            lab.wait(timeout=10)
            raise CourseError(f"JupyterLab did not answer on port {port} within {READY_TIMEOUT_S:.0f} s",
                              fix="run `coursekit doctor`, then `make lab` again")
        time.sleep(0.1)
    address = url(port, token)
    # the folder, too: a coursekit installed from another checkout serves that checkout, not the current folder
    say(f"JupyterLab for Celery Lab: {address}   (serving {root}; Ctrl-C stops it)")
    if open_browser and _desktop_browser():
        try:
            webbrowser.open(address)
        except webbrowser.Error:
            pass  # the URL is printed just above
    return lab.wait()
