"""Run notebooks headless, each on a fresh kernel, the way CI and `coursekit run` do."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .defaults import DEFAULTS
from .errors import CourseError


@dataclass
class Outcome:
    path: Path
    ok: bool
    seconds: float
    cell: int | None = None
    """1-based index of the failing cell among all cells, as JupyterLab counts them."""
    error: str = ""
    notebook: object = None
    """The executed notebook (nbformat), outputs included: tests read what its figures and tables show from it
    (`facts.read(outcome.notebook)`)."""

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        text = f"{verdict}  {self.seconds:6.1f} s  {self.path}"
        if not self.ok:
            where = f"cell {self.cell}: " if self.cell else ""
            text += f"\n      {where}{self.error}"
        return text


def find(paths: list[str | Path]) -> list[Path]:
    """Notebooks named or found (sorted) in the folders named; checkpoints skipped."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise CourseError(f"{p} is not a notebook or a folder", fix="name .ipynb files or folders that hold them")
    return found


def _failing_cell(nb) -> tuple[int | None, str]:
    for index, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, f"{out.get('ename')}: {out.get('evalue')}".strip()
    return None, ""


def run(path: Path, cell_timeout: int = DEFAULTS.cell_timeout_s, save_to: Path | None = None) -> Outcome:
    """Execute `path` top to bottom on a new kernel started in the notebook's folder."""
    nb = nbformat.read(path, as_version=4)
    current: dict[str, int] = {}

    def note_cell(cell, cell_index):
        current["cell"] = cell_index + 1

    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", on_cell_start=note_cell,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    begun = time.monotonic()
    ok, cell, error = True, None, ""
    # JupyterLab tells a kernel its notebook in JPY_SESSION_NAME; do the same, so the workers it starts name it.
    kernel_env = {**os.environ, "JPY_SESSION_NAME": str(path.resolve())}
    try:
        client.execute(env=kernel_env)
    except CellTimeoutError as exc:
        ok, cell = False, current.get("cell")
        error = f"the cell ran longer than {cell_timeout} s ({str(exc).splitlines()[0]})"
    except CellExecutionError:
        ok = False
        cell, error = _failing_cell(nb)
    except DeadKernelError as exc:
        ok, cell, error = False, current.get("cell"), f"the kernel died: {exc}"
    seconds = time.monotonic() - begun
    if save_to is not None:
        nbformat.write(nb, save_to)
    return Outcome(path, ok, seconds, cell, error, notebook=nb)
