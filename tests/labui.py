"""JupyterLab in Debian's chromium, driven with Playwright the way a learner clicks. The browser tests and
`make screenshots` both use it.

`LabServer` starts `coursekit lab`, the command `make lab` runs, on a free port, with Jupyter runtime, config and
data folders of its own, so that parallel test processes never share a server, a workspace or a signature store.
It serves a copy of the repository: running notebooks through the UI writes files (an exercise's %%writefile,
autosave), and a test run must never overwrite a learner's work in exercises/. Stopping it stops the server and
its kernels, and each kernel's workers follow their kernel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
NOT_COPIED = (".git", ".venv", "workspace", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "*.egg-info",
              "build", "dist", "bench.json", "screenshots")
def _without_closed_socket_writes(lines: list[str]) -> list[str]:
    """The lines less tornado's report that a message was written to a WebSocket already closed ("Task exception was
    never retrieved" ... `tornado.websocket.WebSocketClosedError`): a page closed while its kernel still sent output,
    as the test does when it is done with a notebook (CI saw it after lesson 08); JupyterLab goes on unharmed."""
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "Task exception was never retrieved":
            end = next((j for j in range(i, min(i + 60, len(lines)))
                        if lines[j].startswith("tornado.websocket.WebSocketClosedError")), None)
            if end is not None:
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    return out


STARVED_PAGE = re.compile(r"\] WebSocket ping timeout after \d+ ms\.$")
SAVES_CROSSED = re.compile(r"ServerApp\] \S*/\.~[^/]+\.ipynb doesn't exist$")
BLANK_WARNING = re.compile(r"^\[W [\d:. -]+ServerApp\] $")
"""A warning with no words at all (an exception whose text is empty, logged as is): CI saw one once at load 20
while lesson 06 killed workers, with nothing before or after it; there is nothing in it to decode or to fix."""
URL_LINE = re.compile(r"JupyterLab for Celery Lab: (http://\S+)")


def missing_browser() -> str:
    """Why the browser tests cannot run on this machine, or '' when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return f"no browser at {CHROMIUM}: apt-get install chromium fonts-noto-cjk (.ci/run does it)"
    try:
        fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        fonts = ""
    if not fonts.strip():
        return "no Chinese font, so the lessons' Chinese questions would show as boxes: apt-get install fonts-noto-cjk"
    return ""


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


class LabDidNotStart(Exception):
    """`coursekit lab` exited, or printed no URL in time; the message is one line that says why."""


class LabServer:
    """`coursekit lab --port N --no-browser`, as `make lab` runs it, serving a copy of the repository in `workdir`
    (or the repository itself with `copy=False`, for tests that only look)."""

    def __init__(self, workdir: Path, port: int | None = None, copy: bool = True, env: dict | None = None):
        from coursekit import probe

        self.workdir = Path(workdir)
        self.port = port or probe.free_port()
        self.root = self.workdir / "course" if copy else ROOT
        self.copy = copy
        self.extra_env = env or {}
        self.lines: list[str] = []
        self.url = ""
        self.token = ""
        self.process: subprocess.Popen | None = None
        self._seen = 0

    def environment(self) -> dict:
        jupyter = self.workdir / "jupyter"
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), JUPYTER_CONFIG_DIR=str(jupyter / "config"),
                   JUPYTER_DATA_DIR=str(jupyter / "data"), IPYTHONDIR=str(jupyter / "ipython"), **self.extra_env)
        return {k: v for k, v in env.items() if v is not None}  # a None in `env` unsets the variable

    def start(self, timeout: float = 90.0) -> "LabServer":
        if self.copy and not self.root.exists():
            shutil.copytree(ROOT, self.root, ignore=shutil.ignore_patterns(*NOT_COPIED))
        command = [str(Path(sys.executable).with_name("coursekit")), "lab", f"--port={self.port}", "--no-browser"]
        if self.copy:
            command.append(f"--root={self.root}")
        # Its own session, so that stop() can reach the server even if `coursekit lab` itself is gone.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=self.environment(), start_new_session=True)
        threading.Thread(target=self._read, daemon=True, name="lab-log").start()
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.process.poll() is not None:
                time.sleep(0.2)  # the reader thread takes the last lines
                said = self.lines[-1] if self.lines else "(nothing)"
                raise LabDidNotStart(f"coursekit lab exited with code {self.process.returncode} before printing "
                                     f"its URL; it said: {said}")
            if time.monotonic() > deadline:
                self.stop()
                raise LabDidNotStart(f"coursekit lab printed no URL within {timeout:.0f} s; "
                                     f"its output: {' | '.join(self.lines[-3:]) or '(nothing)'}")
            time.sleep(0.1)
        self.token = re.search(r"token=(\w+)", self.url).group(1)
        self._seen = len(self.lines)
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            found = URL_LINE.search(line)
            if found:
                self.url = found.group(1)

    def page_url(self, path: str) -> str:
        """Open `path` in a fresh workspace (`reset`), so that no notebook left open by an earlier page returns."""
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?reset&token={self.token}"

    def new_log_lines(self) -> list[str]:
        """What the server printed since the URL line, or since the last call; except the warning that a browser
        page did not answer a WebSocket ping within 30 s: with the suite's 4 processes on 2 cores, headless
        chromium can be starved that long (seen while lessons 03 and 04 ran side by side), and what the learner
        would see then is the page reconnecting, not a line to decode. Also the warning that the temporary copy of an
        atomic save (`.~name.ipynb`) was gone: the test's own save crossing an autosave on a starved machine (seen at
        load 20), and the notebook on disk is whole."""
        fresh = self.lines[self._seen:]
        self._seen += len(fresh)
        return [line for line in _without_closed_socket_writes(fresh)
                if not (STARVED_PAGE.search(line) or SAVES_CROSSED.search(line) or BLANK_WARNING.match(line))]

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End a notebook's kernel (and so its workers) once a test is done with it, as closing it would."""
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM `coursekit lab`, which stops JupyterLab, which shuts its kernels down; SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left in its session: the server, if it hung
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


FRAME_OF_WIDGET_IMAGES = """() => [...document.querySelectorAll('img.widget-image')].map(img => {
    if (!img.complete || !img.naturalWidth) return {width: 0, height: 0, colours: 0, digest: ''};
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let digest = 0; const colours = new Set();
    for (let i = 0; i < pixels.length; i += 4) {
        const rgb = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
        digest = (Math.imul(digest, 31) + rgb) | 0;
        if (colours.size < 64) colours.add(rgb);
    }
    return {width: canvas.width, height: canvas.height, colours: colours.size, digest: String(digest)};
})"""
"""Each live widget image as the browser shows it: its size, how many colours it holds (a blank frame has one)
and a digest of its pixels, so that two frames can be told apart."""


def _kernel_connects(page, seconds: float) -> bool:
    """Whether the status bar names an idle ipykernel within `seconds` (it names the kernel once connected; the
    toolbar's indicator says "idle" even before)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function("""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
                                    .some(item => /\\(ipykernel\\) \\| Idle$/.test(item.textContent.trim()))""",
                               timeout=seconds * 1000)
        return True
    except PlaywrightTimeout:
        return False


def _why_not_connected(page, lab: "LabServer") -> str:
    """What the page and the server showed while no kernel connected: the status bar, any dialog, the server's
    last lines (read without marking them seen, so the test's own log check still gets them)."""
    status = [t.strip() for t in page.locator(".jp-StatusBar-TextItem").all_text_contents() if t.strip()]
    dialogs = [t.strip()[:200] for t in page.locator(".jp-Dialog").all_text_contents()]
    try:
        kernels = [(s["path"], s["kernel"]["execution_state"], s["kernel"]["connections"])
                   for s in lab.api("GET", "/api/sessions")]
    except Exception as exc:  # a server that does not answer is itself the finding
        kernels = f"no answer from /api/sessions: {exc!r}"
    return (f"status bar {status}, dialogs {dialogs}, kernels (path, state, connections) {kernels}, "
            f"server's last lines {lab.lines[-5:]}")


class Notebook:
    """One notebook open in its own JupyterLab page."""

    def __init__(self, page, lab: LabServer, path: str):
        self.page, self.lab, self.path = page, lab, path

    @classmethod
    def open(cls, context, lab: LabServer, path: str) -> "Notebook":
        page = context.new_page()
        page.goto(lab.page_url(path))
        if _kernel_connects(page, seconds=60):
            return cls(page, lab, path)
        # Once on CI (a loaded machine) a page never connected to its kernel in 60 s: JupyterLab's known sporadic
        # stuck kernel WebSocket. A learner would reload the page, and so does the test, once, saying so.
        first = _why_not_connected(page, lab)
        try:
            page.reload()
            connected = _kernel_connects(page, seconds=60)
        except Exception as exc:  # the reload itself timed out: the message must still say what was seen first
            connected, first = False, f"{first}; the reload failed: {exc!r}"[:2000]
        if not connected:
            raise AssertionError(f"{path}: no kernel connected in 60 s ({first}), nor in 60 s after a reload "
                                 f"({_why_not_connected(page, lab)})")
        warnings.warn(f"{path}: the page connected to its kernel only after a reload; before it: {first}")
        return cls(page, lab, path)

    @property
    def panel(self):
        return self.page.locator(".jp-NotebookPanel:visible")

    def kernel_status(self) -> str:
        return self.panel.locator(".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or ""

    def prompts(self) -> list[str]:
        return [p.strip() for p in self.panel.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()]

    def run_all(self, timeout: float = 180, while_running=None) -> None:
        """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle.
        `while_running(page)` is called about four times a second meanwhile."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        begun = time.monotonic()
        started = False
        while True:
            prompts = self.prompts()
            busy = any("*" in p for p in prompts)
            started = started or busy or all(p != "[ ]:" for p in prompts)
            if started and not busy and self.kernel_status() == "idle":
                return
            if not started and time.monotonic() > begun + 30:
                raise AssertionError(f"{self.path}: Run All Cells started no cell within 30 s")
            if time.monotonic() > begun + timeout:
                raise AssertionError(f"{self.path}: still running after {timeout:.0f} s; prompts {prompts}")
            if while_running is not None:
                while_running(self.page)
            time.sleep(0.25)

    def problems(self) -> list[str]:
        """Cells that did not run (Run All stops at an error) and every output written to stderr (tracebacks,
        warnings), each as one line naming the cell."""
        found = []
        for number, cell in enumerate(self.panel.locator(".jp-CodeCell").all(), start=1):
            prompt = cell.locator(".jp-InputPrompt").text_content().strip()
            if not re.fullmatch(r"\[\d+\]:", prompt):
                found.append(f"code cell {number} did not run (prompt {prompt!r})")
            for out in cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all():
                text = out.text_content().strip()
                found.append(f"code cell {number} wrote to stderr: {text[:300]!r}")
        return found

    def cell_with(self, source: str):
        """The cell whose code contains `source`."""
        return self.panel.locator(".jp-Cell").filter(has=self.page.locator(".jp-InputArea", has_text=source)).first

    def replace_in_cell(self, source: str, line: str, old: str, new: str) -> None:
        """Edit a cell as a learner does: click the line, move to its end, delete `old`, type `new`."""
        assert line.endswith(old)
        editor_line = self.cell_with(source).locator(".cm-line", has_text=line).first
        editor_line.click()
        self.page.keyboard.press("End")
        for _ in old:
            self.page.keyboard.press("Backspace")
        self.page.keyboard.type(new)
        self.page.keyboard.press("Escape")

    def screenshot(self, source: str, path: Path, outputs_only: bool = False) -> None:
        """A picture of the cell holding `source`, outputs included (or its outputs alone)."""
        cell = self.cell_with(source)
        self.page.mouse.move(0, VIEWPORT["height"] - 1)  # away from the cell: hovering shows its collapser bar
        # Cells out of view are laid out only when they scroll in (JupyterLab's default windowing), and the cells
        # around them grow then: wait until the cell stops moving, or the picture would show its neighbour.
        last = None
        for _ in range(40):
            cell.scroll_into_view_if_needed()
            box = cell.bounding_box()
            if box == last:
                break
            last = box
            time.sleep(0.25)
        path.parent.mkdir(parents=True, exist_ok=True)
        (cell.locator(".jp-Cell-outputWrapper") if outputs_only else cell).screenshot(path=str(path))

    def save(self, timeout: float = 30) -> "nbformat.NotebookNode":
        """File > Save Notebook, then the notebook as JupyterLab wrote it to disk: its outputs, and their metadata
        (the facts a lesson's figures and tables carry), as the learner's browser holds them."""
        import nbformat

        path = self.lab.root / self.path
        before = path.stat().st_mtime_ns
        self.page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Save Notebook$")).click()
        deadline = time.monotonic() + timeout
        while path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not save {self.path} within {timeout:.0f} s")
            time.sleep(0.2)
        time.sleep(0.5)  # the contents API writes the file whole, but give a slow disk a moment
        return nbformat.read(path, as_version=4)

    def close(self) -> None:
        # The page first: a page whose kernel is shut down under it reconnects, and the server logs that attempt's
        # failure a minute later, in the middle of whatever test uses the lab next.
        self.page.close()
        self.lab.shut_down_kernels()


def answer_first_exercise(lab: LabServer, context) -> Notebook:
    """Open exercise 00, type the right answer into its %%writefile cell, and Run All: a learner's first pass."""
    nb = Notebook.open(context, lab, "exercises/00_setup.ipynb")
    nb.replace_in_cell("%%writefile workspace/ex00_first.py", "return ____", "____", "x * y")
    nb.run_all()
    return nb


def file_browser_names(page) -> list[str]:
    """Go to the root of the file browser (its home crumb) and list what is there."""
    page.locator(".jp-BreadCrumbs-home").first.click()
    # The course's notebooks/ folder is listed only at the root: once it shows, the listing is the root's.
    page.locator(".jp-DirListing-itemText", has_text=re.compile(r"^notebooks$")).wait_for(timeout=30_000)
    return [n.strip() for n in page.locator(".jp-DirListing-item .jp-DirListing-itemText").all_text_contents()]
