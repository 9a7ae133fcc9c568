"""Entry point of every Celery process coursekit starts (workers, Flower):
`python -m coursekit.launch --owner PID celery ARGS...`; `command(ARGS...)` builds that line.

It runs Celery's own command line in this process, with one addition: a daemon thread that SIGKILLs the
process's whole group as soon as the process that started it is gone, however it died. A parent-death
signal is not enough: Linux fires PR_SET_PDEATHSIG when the spawning THREAD exits, and it would not reach the
pool children. The argv keeps `celery ... worker` visible, so `ps` shows what this is.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from .defaults import DEFAULTS


def _follow_owner(owner: int, interval: float) -> None:
    while True:
        # Once the owner dies we are re-parented (to init or a subreaper), so our parent pid changes.
        if os.getppid() != owner:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        time.sleep(interval)


def command(*celery_args: str) -> list[str]:
    """The argv that runs `celery ARGS...` owned by this process: it dies when this process does. Start it in a
    process group of its own (`process_group=0`, or `start_new_session=True`), so that the group it kills is its
    own."""
    return [sys.executable, "-m", "coursekit.launch", "--owner", str(os.getpid()), "celery", *celery_args]


def _without_unused_commands() -> None:
    """Keep Celery's command line from loading what a worker or beat never runs: the commands other packages plug
    into `celery` (Flower's, which brings tornado and prometheus_client) and click_repl (prompt_toolkit), which
    only `celery amqp repl` uses. They cost each start about 0.1 s of CPU (0.46-0.47 s to 0.36-0.38 s to `ready.`,
    medians of 6 starts, twice) and every process of the worker 11 MiB (a fresh pool child: 54 MiB to 43.5 MiB),
    and a check starts a worker for every answer it judges. Nothing else changes: the same `celery ... worker`
    command runs, parsed by Celery's own command line."""
    import importlib.metadata
    import types

    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == "celery.commands":
            return importlib.metadata.EntryPoints(())
        return real(**params)

    # Left in place: Celery imports its command line only after it has let gevent or eventlet patch the standard
    # library (celery.__main__), and importing it any earlier broke every gevent worker.
    importlib.metadata.entry_points = entry_points
    repl = types.ModuleType("click_repl")
    repl.register_repl = lambda group, name="repl": None
    sys.modules.setdefault("click_repl", repl)


POOL_TMP_ENV = "COURSEKIT_POOL_TMP"
"""A folder for multiprocessing's temporary files. billiard's pool makes a shared value per worker, whose heap
arena creates a /tmp/pymp-* folder that only a clean exit removes: every check SIGKILLs its worker, and each
`make test` left about 500 of them. Here the folder is the course's, and `Worker` removes it when the worker has
gone."""


def _pool_tmp_in(folder: str) -> None:
    import multiprocessing.process

    os.makedirs(folder, exist_ok=True)
    multiprocessing.process.current_process()._config["tempdir"] = folder  # what util.get_temp_dir() returns


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--owner" or argv[2] != "celery":
        sys.exit("usage: python -m coursekit.launch --owner PID celery ARGS...")
    if os.environ.get(POOL_TMP_ENV):
        _pool_tmp_in(os.environ[POOL_TMP_ENV])
    owner = int(argv[1])
    threading.Thread(target=_follow_owner, args=(owner, DEFAULTS.owner_poll_s), daemon=True,
                     name="coursekit-follow-owner").start()
    if {"worker", "beat"} & set(argv[3:]):
        _without_unused_commands()
    from celery.__main__ import main as celery_main

    sys.argv = argv[2:]
    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
