"""The `coursekit` command: up, down, status, reset, doctor, run, bench, check, jump, team (up, down, table), drill."""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from . import broker, doctor, embedded, namespace, probe, state
from .defaults import DEFAULTS
from .errors import CourseError


def friendly(fn):
    """Turn a CourseError into its message and exit code 2: no traceback in the learner's face."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CourseError as exc:
            click.echo(exc.text(), err=True)
            sys.exit(2)

    return wrapper


@click.group(help="Celery Lab's helper: brokers, workers, notebooks.")
def cli() -> None:
    pass


@cli.command(help="Find a broker for the course, or start the embedded one, and say which.")
@click.option("--embedded", "embedded_only", is_flag=True, help="Use coursekit's own redis-server, whatever else runs.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port for the embedded redis-server (default: a free one).")
@friendly
def up(embedded_only: bool, port: int | None) -> None:
    found = broker.up(embedded_only=embedded_only, port=port)
    for note in found.notes:
        click.echo(f"note: {note}")
    click.echo(f"redis: {found.describe()}")
    rabbit = broker.rabbitmq()
    click.echo(f"rabbitmq: {rabbit.describe() if rabbit else 'none (lessons that need it will say so)'}")
    click.echo(f"namespace: {namespace.prefix()}")


@cli.command(help="Stop what coursekit started, and nothing else. Safe to run twice.")
@friendly
def down() -> None:
    for line in broker.down():
        click.echo(line)


@cli.command(help="What broker the course would use now, and what coursekit has running.")
@friendly
def status() -> None:
    try:
        found = broker.current()
        for note in found.notes:
            click.echo(f"note: {note}")
        click.echo(f"redis: {found.describe()}")
    except CourseError as exc:
        click.echo(f"redis: none ({exc.problem}; {exc.fix})")
    rabbit = broker.rabbitmq()
    click.echo(f"rabbitmq: {rabbit.describe() if rabbit else 'none'}")
    record = state.read(embedded.STATE_FILE)
    started = "nothing" if not record else f"embedded Redis pid {record['pid']} port {record['port']} " \
                                           f"since {record['started_at']}"
    click.echo(f"started by coursekit: {started}")
    for finding in doctor.workers():  # this course's workers, each with what started it; others as one count
        click.echo("\n".join([f"{finding.topic}: {finding.detail}", *(f"  {line}" for line in finding.more)]))


@cli.command(help="Delete the course's keys (namespace prefix) from the broker. Nothing else is touched.")
@friendly
def reset() -> None:
    found = broker.current()
    if found.transport != "redis":
        raise CourseError("reset works on the Redis broker only", fix="point COURSEKIT_BROKER_URL at Redis")
    count = namespace.reset(found.url)
    click.echo(f"deleted {count} course key(s) with prefix {namespace.prefix()!r} on {probe.safe(found.url)}")


@cli.command(help="Check that the course can run here; every problem comes with its fix.")
def doctor_cmd() -> None:
    text, code = doctor.report(doctor.diagnose())
    click.echo(text)
    sys.exit(code)


cli.add_command(doctor_cmd, name="doctor")


@cli.command(help="Run notebooks headless, each on a fresh kernel. PATHS are notebooks or folders.")
@click.argument("paths", nargs=-1, required=True)
@click.option("--timeout", default=DEFAULTS.cell_timeout_s, show_default=True, help="Seconds one cell may run.")
@friendly
def run(paths: tuple[str, ...], timeout: int) -> None:
    from . import runner

    found = runner.find(list(paths))
    if not found:
        raise CourseError(f"no notebooks in {' '.join(paths)}", fix="name .ipynb files or folders holding them")
    broker.current()  # fail here, once, rather than in every notebook's first cell
    failed = 0
    for path in found:
        outcome = runner.run(path, cell_timeout=timeout)
        click.echo(outcome.line())
        failed += not outcome.ok
    click.echo(f"{len(found) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@cli.command(help="Measure broker start, worker start and task throughput.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly
def bench(as_json: bool) -> None:
    from . import bench as benchmarks

    figures = benchmarks.run_all()
    click.echo(json.dumps(figures, indent=None if as_json else 2))


@cli.command(help="Start Flower for the course's workers and tasks on 127.0.0.1; runs until Ctrl-C.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: a free one).")
@friendly
def flower(port: int | None) -> None:

    from .flower import Flower

    monitor = Flower(port)
    try:
        monitor.start()
        click.echo(f"Flower: {monitor.url}  (namespace {monitor.namespace}, "
                   f"broker {probe.safe(monitor.broker_url)}; Ctrl-C to stop)")
        code = monitor.wait()
    except KeyboardInterrupt:
        click.echo("Flower stopped")
        return
    finally:
        monitor.stop()
    raise CourseError(f"Flower exited by itself with code {code}", fix=f"read its log: {monitor.logfile}")


@cli.command(help="Generate exercises/ from solutions/ (answers replaced by ____).")
@click.option("--check", "check_only", is_flag=True, help="Only report whether exercises/ is stale; exit 1 if so.")
@friendly
def build(check_only: bool) -> None:
    from . import build as builder
    from .course import chapters

    if check_only:
        import nbformat

        stale = [ch.stem for ch in chapters() if ch.path("solutions").exists() and (
            not ch.path("exercises").exists() or
            [c.source for c in builder.exercise_notebook(ch.path("solutions")).cells] !=
            [c.source for c in nbformat.read(ch.path("exercises"), as_version=4).cells])]
        click.echo(f"stale: {', '.join(stale)} (run `coursekit build`)" if stale else "exercises/ is up to date")
        sys.exit(1 if stale else 0)
    for path in builder.build():
        click.echo(f"wrote {path}")


def _default_workspace():
    from pathlib import Path

    from .course import ROOT

    here = Path("workspace")
    return here if here.is_dir() else ROOT / "exercises" / "workspace"


def _checked(exercise, workspace):
    """The verdict card, whatever happens: never a traceback (strict mode is for notebooks under test)."""
    from .exercise import unexpected
    from .outcomes import Uncheckable, Verdict

    try:
        return exercise.verdict(workspace)
    except Exception as exc:  # Exercise.verdict turns every failure into a card; this is the last net
        message, fix = unexpected(exc, None)
        return Verdict(exercise.id, Uncheckable.status, message, [], 0.0, fix)


def _exit_quietly(code: int) -> None:
    """Exit once the verdicts are printed, without the interpreter's shutdown: a check can leave AsyncResults
    of tasks that never finished, and one collected during shutdown unsubscribes from Redis and prints
    "Exception ignored in AsyncResult.__del__", which reads like a crash under a correct verdict. Workers are
    stopped first, and the preflights' fork server; nothing else of this command needs its exit handlers."""
    from . import forkserver
    from .worker import stop_all

    stop_all(timeout=3)
    forkserver.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command(help="Check an exercise against your workspace module, as the notebook's check() does.")
@click.argument("exercise_id", required=False)
@click.option("--all", "check_all", is_flag=True, help="Check every exercise whose module you have written.")
@click.option("--list", "list_all", is_flag=True, help="List every exercise with its state from your progress.")
@click.option("--watch", is_flag=True, help="Check again every time the module file is saved (Ctrl-C to stop).")
@click.option("--workspace", "folder", type=click.Path(file_okay=False), help="Folder holding your modules.")
@click.option("--max-runs", type=int, default=0, hidden=True, help="With --watch: stop after N checks (tests).")
@friendly
def check(exercise_id: str | None, check_all: bool, list_all: bool, watch: bool, folder: str | None,
          max_runs: int) -> None:
    import time
    from pathlib import Path

    from . import progress as learner
    from .checks import all_exercises
    from .course import exercises as manifest

    known = all_exercises()
    if check_all:
        workspace = Path(folder) if folder else _default_workspace()
        verdicts = [_checked(known[ex_id], workspace) for ex_id in manifest() if ex_id in known]
        for verdict in verdicts:
            click.echo(repr(verdict))
        passed = sum(v.passed for v in verdicts)
        click.echo(f"{passed} of {len(verdicts)} exercises passed")
        _exit_quietly(0 if passed == len(verdicts) else 1)
    if list_all or not exercise_id:
        done = learner.load()["exercises"]
        for ex_id, entry in manifest().items():
            click.echo(f"{ex_id:22} {done.get(ex_id, {}).get('status', 'not attempted'):14} {entry['title']}")
        return
    if exercise_id not in known:
        raise CourseError(f"no exercise {exercise_id!r}", fix=f"pick one of: {', '.join(known)}")
    exercise = known[exercise_id]
    workspace = Path(folder) if folder else _default_workspace()
    module = workspace / f"{exercise.module}.py"
    runs, last = 0, None
    while True:
        stamp = module.stat().st_mtime if module.exists() else None
        if stamp != last or not watch:
            verdict = _checked(exercise, workspace)
            click.echo(repr(verdict))
            runs, last = runs + 1, stamp
            if not watch or (max_runs and runs >= max_runs):
                _exit_quietly(0 if verdict.passed else 1)
            click.echo(f"-- watching {module}; save it to check again (Ctrl-C to stop)")
        time.sleep(0.5)


@cli.command(help="JupyterLab for the course: the repository in its file browser, open at the first lesson.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to serve on (default 8888, or a free one).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option("--root", type=click.Path(exists=True, file_okay=False), hidden=True,
              help="Serve this copy of the repository instead (the browser tests).")
def lab(port: int | None, no_browser: bool, root: str | None) -> None:
    from pathlib import Path

    from . import lab as jupyter_lab
    from .course import ROOT

    try:
        code = jupyter_lab.serve(port, open_browser=not no_browser, root=Path(root) if root else ROOT,
                                 say=click.echo)
    except CourseError as exc:  # one line: `make lab` prints nothing else that a learner must read
        click.echo(f"coursekit lab: {exc.problem.rstrip('.')}. Fix: {exc.fix}", err=True)
        sys.exit(2)
    sys.exit(code)


@cli.command(help="Your progress by chapter; --export for a facilitator, --merge to see a team.")
@click.option("--export", "export_to", type=click.Path(dir_okay=False), help="Write JSON (and CSV beside it).")
@click.option("--merge", "merge_from", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Exported JSON files of several learners; repeat the option or list them after it.")
@click.argument("more", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@friendly
def progress(export_to: str | None, merge_from: tuple[str, ...], more: tuple[str, ...]) -> None:
    from . import progress as learner

    if merge_from:
        click.echo(learner.as_text(learner.merge([*merge_from, *more])))
        click.echo(learner.MINUTES_NOTE)
        return
    if export_to:
        json_path, csv_path = learner.export(export_to)
        click.echo(f"wrote {json_path} and {csv_path}")
        return
    frame = learner.table(learner.load())
    click.echo(learner.as_text(frame))
    click.echo(learner.MINUTES_NOTE)
    from .drill import records

    click.echo(records.as_text())
    if not frame.empty and frame["given"].sum():
        click.echo("given: answers `coursekit jump` wrote for you; a check you pass turns them into done")


@cli.command(help="The interview drill: timed questions, each answer settled by a live run on a real worker. "
                   "Ctrl-C ends it with the score so far.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option("--minutes", type=click.FloatRange(min=0.5), help="A time limit for the whole drill.")
@click.option("--chapter", help="Only this chapter's questions (00-13).")
@click.option("--count", type=click.IntRange(min=1), help="How many questions (default: all that fit).")
@click.option("--seconds", type=click.FloatRange(min=5), default=60, show_default=True, help="Per question.")
@click.option("--mock", is_flag=True, help="A mock interview: 10 questions across chapters, 20 minutes, no hints.")
@click.option("--report", "report_to", type=click.Path(dir_okay=False),
              help="Write the report as JSON here and as Markdown beside it (.md).")
@click.option("--seed", type=int, hidden=True, help="Shuffle reproducibly (tests).")
@friendly
def drill(lang, minutes, chapter, count, seconds, mock, report_to, seed) -> None:
    from .drill import session, terminal
    from .drill.bank import AnswerError

    try:
        questions = session.pick(chapter=chapter, count=count, mock=mock, seed=seed)
    except AnswerError as exc:
        raise CourseError(str(exc), fix="e.g. `coursekit drill --chapter 04`") from None
    if mock:
        minutes = minutes or session.MOCK_MINUTES
    run = session.Drill(questions, lang=lang, minutes=minutes, seconds_per_question=seconds, mock=mock)
    right, asked = terminal.run(run, read=input, out=click.echo, report_to=report_to)
    _exit_quietly(0)


@cli.command(help="Catch up to chapter NN: write the answers of every exercise before it into your workspace "
                   "and mark them given. A module you wrote is kept as <name>.py.bak-<time>.")
@click.argument("chapter")
@click.option("--workspace", "folder", type=click.Path(), help="Folder holding your modules.")
@friendly
def jump(chapter: str, folder: str | None) -> None:
    from pathlib import Path

    from .checkpoint import jump as fill

    done = fill(chapter, Path(folder) if folder else _default_workspace())
    for line in done.lines():
        click.echo(line)
    if done.given:
        click.echo(f"ready for chapter {done.chapter}: `coursekit check --list` shows them as given")


@cli.command("team-table", help="The facilitator's view: one row per learner publishing progress on the shared "
                                "broker (chapter, passed, hints, solutions looked at, idle minutes, stuck).")
@click.option("--url", help="The facilitator URL from `coursekit team up` (default: the team Redis `team up` "
                            "started on this machine, else the course's broker).")
@click.option("--stuck-minutes", type=click.FloatRange(min=0), default=10, show_default=True,
              help="Flag a learner whose last exercise was first tried longer ago than this and is not passed.")
@click.option("--base", help="Namespace the learners' prefixes start with (default: COURSEKIT_NAMESPACE or "
                             "celerylab:).")
@click.option("--watch", is_flag=True, help="Read the table again every --every seconds (Ctrl-C to stop).")
@click.option("--every", type=click.FloatRange(min=1), default=5, show_default=True, help="Seconds between reads.")
@click.option("--max-runs", type=int, default=0, hidden=True, help="With --watch: stop after N reads (tests).")
@friendly
def team_table(url: str | None, stuck_minutes: float, base: str | None, watch: bool, every: float,
               max_runs: int) -> None:
    import time

    from .progress import as_text
    from .teamtable import team_table as read

    from .team import admin_url

    url = url or admin_url()
    runs = 0
    try:
        while True:
            frame = read(url, stuck_minutes, base)
            shown = frame.assign(stuck=frame["stuck"].map({True: "STUCK", False: ""}), idle_min=frame["idle_min"]
                                 .map(lambda m: "-" if m != m or m is None else f"{m:g}"))
            text = as_text(shown) if not frame.empty else "no learner has published progress yet"
            click.echo(f"{time.strftime('%H:%M:%S')}  stuck = last exercise tried > {stuck_minutes:g} min, "
                       f"not passed\n{text}")
            runs += 1
            if not watch or (max_runs and runs >= max_runs):
                return
            time.sleep(every)
    except KeyboardInterrupt:
        return


@cli.group(help="A shared broker for a group: one Redis, each learner walled into their own namespace.")
def team() -> None:
    pass


@team.command("up", help="Start (or configure, with --redis) the group's Redis and print each learner's set-up.")
@click.option("--learners", help="Learner names, comma-separated: ana,bo,cy.")
@click.option("--learners-file", type=click.Path(dir_okay=False), help="A file with one learner name a line.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --password.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: a free one).")
@click.option("--password", help="The admin password (needed with a non-loopback --host; else a random one).")
@click.option("--advertise", help="Host name learners use to reach it (default: --host, or this machine's name).")
@click.option("--redis", "redis_url", help="Configure this running Redis (its URL's user may run ACL SETUSER).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the set-up lines to this file (mode 600).")
@friendly
def team_up(learners, learners_file, host, port, password, advertise, redis_url, out) -> None:
    from . import team as group

    names = group.parse_learners(learners, learners_file)
    made = group.up(names, host=host, port=port, password=password, advertise=advertise, redis_url=redis_url)
    if out:
        click.echo(f"wrote {len(names)} learner set-up line(s) to {group.write_lines(made, out)}")
    else:
        click.echo("\n".join(made.lines()))


@team.command("down", help="Stop the group's Redis that `coursekit team up` started, and nothing else.")
@friendly
def team_down() -> None:
    from . import team as group

    click.echo(group.down())


team.add_command(team_table, "table")  # `coursekit team table`, the same command as `coursekit team-table`


def main() -> None:
    cli(prog_name="coursekit")
