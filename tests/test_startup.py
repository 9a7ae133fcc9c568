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


def test_a_worker_imports_no_notebook_libraries():
    """coursekit.launch and every lab a worker may be started on (`-A coursekit.labs.X`), imported one after the
    other: each is named with what it pulled in (the outage lab's module-level pandas cost each of its workers 0.5 s
    of CPU, 1.2 s in all to `ready.`)."""
    probe = ("import importlib, pkgutil, sys, coursekit.labs as labs; import coursekit.launch\n"
             f"heavy = {HEAVY!r}\n"
             "print('coursekit.launch', *[m for m in heavy if m in sys.modules])\n"
             "for info in pkgutil.iter_modules(labs.__path__, 'coursekit.labs.'):\n"
             "    importlib.import_module(info.name)\n"
             "    print(info.name, *[m for m in heavy if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = [line.split() for line in done.stdout.splitlines()]
    assert len(imported) > 20, done.stdout
    heavy = [line for line in imported if len(line) > 1]
    assert not heavy, f"first to pull in a notebook library: {' '.join(heavy[0])}"


def test_the_notebook_names_still_arrive_on_first_use():
    loaded = loaded_by("import coursekit as ck; assert callable(ck.record) and callable(ck.live) and "
                       "callable(ck.workspace) and 'record' in dir(ck)")
    assert {"pandas", "matplotlib"} <= set(loaded)
