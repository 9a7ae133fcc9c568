"""What a worker imports when it starts: every worker imports coursekit for its lab's app, so the package's
import must not pull in the notebook-side libraries (pandas, matplotlib, ipywidgets: ~0.7 s of CPU each time)."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "matplotlib", "ipywidgets")


def loaded_by(statement: str) -> list[str]:
    probe = f"{statement}; import sys; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("module", ["coursekit.labs.first", "coursekit.labs.calling", "coursekit.labs.retrying",
                                    "coursekit.launch"])
def test_a_worker_imports_no_notebook_libraries(module):
    assert loaded_by(f"import {module}") == []


def test_the_notebook_names_still_arrive_on_first_use():
    loaded = loaded_by("import coursekit as ck; assert callable(ck.record) and callable(ck.live) and "
                       "callable(ck.workspace) and 'record' in dir(ck)")
    assert {"pandas", "matplotlib"} <= set(loaded)
