"""Worker command lines as a learner would deploy them, read strictly: `celery -A workspace.ex03_routing worker
-Q images -c 1`. A check starts real workers from them (`fleet.py`), so it takes only the options it can run as
written, and says why it refuses any other.

`parse_workers(value, module)` reads a dict {worker name: command line} into `WorkerLine`s. A line `celery` itself
would refuse (a bad value, no such option, another module) is Incorrect; a valid line with an option the check
does not run (it would change what the check measures, or needs a pool the course does not install) is
Uncheckable, naming the option. How big a pool the machine can boot is the fleet's to judge (`fleet.py`): only
with the app's settings is it known what a line without -c or -P starts.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass

import click

from .outcomes import Incorrect, Uncheckable

MAX_WORKERS = 4
"""Workers one check starts: each costs a second of boot on 2 cores."""
RUN = ("-Q", "-X", "-c", "-P", "--prefetch-multiplier", "-O", "--disable-prefetch")
"""The options a check passes on to its worker (long spellings accepted too)."""
IGNORED = ("-l/--loglevel", "-E/--events", "-n/--hostname")
"""Accepted and left out: the check sets them itself (it needs events, and node names of its own)."""
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,30}")


@dataclass(frozen=True)
class WorkerLine:
    """One worker as deployed: its name, the line as written, the queues it names with -Q (None: the app's),
    the options the check's worker runs with, normalised (`-Q images -c 1`), and its -c and -P (None: not given)."""

    name: str
    text: str
    queues: tuple[str, ...] | None
    options: tuple[str, ...]
    concurrency: int | str | None
    pool: str | None = None
    unpatched: bool = False
    """-P gevent/eventlet written so that the `celery` command does not see it before importing anything (`-Pgevent`,
    `-P=gevent`): the pool starts without monkey patching, as celery itself would start it (celery-facts 9)."""
    app_attribute: str | None = None
    """`app` in `-A module:app` or `-A module.app`: the name the worker looks up in the module (None: Celery looks
    for `app`, `celery` or the only Celery app there)."""

    def __str__(self) -> str:
        return f"{self.name}: {self.text}"


def _concurrency(ctx, param, value):
    if value is None or value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"must be a whole number or 'auto', got {value!r}") from None
    if number < 0:
        raise click.BadParameter(f"must be a whole number or 'auto', got {value!r}")
    return number


@click.command(context_settings={"help_option_names": [], "ignore_unknown_options": False})
@click.option("-Q", "--queues")
@click.option("-X", "--exclude-queues")
@click.option("-c", "--concurrency", callback=_concurrency)
@click.option("-P", "--pool", type=click.Choice(["prefork", "processes", "threads", "solo", "gevent", "eventlet"]))
@click.option("--prefetch-multiplier", type=click.IntRange(min=0))
@click.option("-O", "--optimization", type=click.Choice(["default", "fair"]))
@click.option("--disable-prefetch", is_flag=True, default=None)
@click.option("-l", "--loglevel")
@click.option("-E", "--events", "--task-events", is_flag=True)
@click.option("-n", "--hostname")
def _worker_options(**_):
    """The subset of `celery worker`'s options a check runs; celery's own command would import pools to check -P."""


def _celery_options() -> set[str]:
    from celery.bin.worker import worker

    return {opt for p in worker.params for opt in p.opts + p.secondary_opts}


def _app_option(tokens: list[str], name: str, module: str) -> tuple[str, list[str]]:
    """Check `celery -A <module> worker` and return the -A value and what follows `worker`."""
    usage = f"write it as `celery -A {module} worker <options>`"
    if not tokens or tokens[0] != "celery":
        raise Incorrect(f"worker {name!r}: {' '.join(tokens)!r} is not a celery command line", fix=usage)
    rest, app = tokens[1:], None
    while rest and rest[0] != "worker":
        token = rest.pop(0)
        if token in ("-A", "--app") and rest:
            app = rest.pop(0)
        elif token.startswith("--app="):
            app = token.split("=", 1)[1]
        elif token.startswith("-A") and len(token) > 2:
            app = token[2:].lstrip("=")
        elif token.startswith("-"):
            raise Uncheckable(f"worker {name!r}: the check does not run celery's option {token}: it starts every "
                              "worker on the course's broker, with your module", fix=f"leave it out: {usage}")
        else:
            raise Incorrect(f"worker {name!r}: the line runs `celery {token}`, not `celery worker`", fix=usage)
    if not rest:
        raise Incorrect(f"worker {name!r}: the line starts no worker (no `worker` in it)", fix=usage)
    if app is None and any(t in ("-A", "--app") or t.startswith(("-A", "--app=")) for t in rest):
        raise Incorrect(f"worker {name!r}: -A comes after `worker`; celery 5 takes it only before the command "
                        "(and stops, saying so)", fix=usage)
    if app is None:
        raise Incorrect(f"worker {name!r}: the line names no app (-A): the worker would not know your tasks",
                        fix=usage)
    if not re.fullmatch(re.escape(module) + r"([.:][A-Za-z_]\w*)?", app):
        raise Incorrect(f"worker {name!r} loads -A {app}, but your tasks are in {module}: a worker that imports "
                        "another module does not know them (unregistered task)", fix=usage)
    return app, rest[1:]


def _options(args: list[str], name: str) -> dict:
    try:
        ctx = _worker_options.make_context("worker", list(args))
    except click.NoSuchOption as exc:
        if exc.option_name in _celery_options():
            raise Uncheckable(f"worker {name!r}: the check does not run {exc.option_name}; it runs only "
                              f"{', '.join(RUN)} (and ignores {', '.join(IGNORED)})",
                              fix=f"leave {exc.option_name} out of the line") from None
        raise Incorrect(f"worker {name!r}: {exc.option_name} is not an option of `celery worker`",
                        fix="see `celery worker --help`") from None
    except click.ClickException as exc:
        raise Incorrect(f"worker {name!r}: {exc.format_message()}",
                        fix="celery would refuse this line too: correct the value") from None
    return ctx.params


def parse_line(name: object, text: object, module: str) -> WorkerLine:
    """One worker: a name and its command line."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Incorrect(f"worker name {name!r}: use a short word of letters, digits, '-' or '_' (e.g. 'images')")
    if not isinstance(text, str):
        raise Incorrect(f"worker {name!r}: its command line must be a string, got {type(text).__name__}",
                        fix=f"e.g. \"celery -A {module} worker -c 1\"")
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise Incorrect(f"worker {name!r}: cannot read {text!r} as a command line ({exc})") from None
    app, args = _app_option(tokens, name, module)
    params = _options(args, name)
    pool = params["pool"]
    if pool in ("gevent", "eventlet") and importlib.util.find_spec(pool) is None:
        raise Uncheckable(f"worker {name!r}: -P {pool} needs the {pool} package, which the course does not install",
                          fix="for tasks that wait on IO use -P threads")
    listed = {}
    for key, flag in (("queues", "-Q"), ("exclude_queues", "-X")):
        if params[key] is not None:
            listed[key] = tuple(q.strip() for q in params[key].split(",") if q.strip())
            if not listed[key]:
                raise Incorrect(f"worker {name!r}: {flag} names no queue", fix=f"e.g. {flag} images")
    options: list[str] = []
    for key, flag in (("queues", "-Q"), ("exclude_queues", "-X"), ("concurrency", "-c"), ("pool", "-P"),
                      ("prefetch_multiplier", "--prefetch-multiplier"), ("optimization", "-O")):
        if params[key] is not None:
            options += [flag, ",".join(listed[key]) if key in listed else str(params[key])]
    if params["disable_prefetch"]:
        options.append("--disable-prefetch")
    unpatched = pool in ("gevent", "eventlet") and _patched_pool(args) != pool
    if unpatched:  # pass it on as written: a spelling that celery's early look at argv misses
        options[options.index("-P") + 1:options.index("-P") + 2] = []
        options[options.index("-P")] = f"-P{pool}"
    attribute = app[len(module) + 1:] or None
    return WorkerLine(name, text, listed.get("queues"), tuple(options), params["concurrency"], pool, unpatched,
                      attribute)


def _patched_pool(args: list[str]) -> str | None:
    """The pool `celery` finds in argv before it imports anything, and patches for (gevent, eventlet): only
    `-P NAME`, `--pool NAME` and `--pool=NAME` (celery/__init__.py: maybe_patch_concurrency)."""
    from celery import _find_option_with_arg

    try:
        return _find_option_with_arg(list(args), ["-P"], ["--pool"])
    except (KeyError, IndexError):
        return None


def parse_workers(value: object, module: str, label: str = "WORKERS", mod=None) -> list[WorkerLine]:
    """{worker name: command line} -> WorkerLines, every line checked before any worker starts (with `mod`, the
    module itself, also that each -A names an app it has)."""
    if not isinstance(value, dict) or not value:
        raise Incorrect(f"{label} must be a dict of worker name -> command line, got {value!r:.80}",
                        fix=f'e.g. {{"general": "celery -A {module} worker -c 1"}}')
    if len(value) > MAX_WORKERS:
        raise Uncheckable(f"{label} names {len(value)} workers; a check starts at most {MAX_WORKERS}",
                          fix="deploy fewer workers")
    lines = [parse_line(name, text, module) for name, text in value.items()]
    if mod is not None:
        _check_apps(lines, mod, module)
    return lines


def _check_apps(lines: list[WorkerLine], mod, module: str) -> None:
    """Each line's -A must name a Celery app of the module (`module.app`, `module:app`), as celery requires."""
    from celery import Celery

    for line in lines:
        if line.app_attribute and not isinstance(getattr(mod, line.app_attribute, None), Celery):
            raise Incorrect(f"worker {line.name!r} loads -A {module}.{line.app_attribute}, but {module} has no Celery "
                            f"app named {line.app_attribute!r}: celery would stop with 'Unable to load celery "
                            "application'", fix=f"write -A {module}: celery finds the app in it")
