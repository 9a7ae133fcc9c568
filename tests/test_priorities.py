"""Chapter 04's support: course queues on RabbitMQ (coursekit.rabbit), workers of an app named `module:attribute`,
and the lesson's replay of a shipped recording where RabbitMQ is missing. The lesson's live run is
test_notebooks.py's; what its text says is asserted in lesson_facts.py, on both paths."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from kombu import Connection
from lesson_facts import failures

import coursekit as ck
from coursekit import course, facts, namespace, probe, rabbit, replays, runner
from coursekit.errors import WorkerError
from coursekit.worker import load_app

LAB = "coursekit.labs.prioritised"


def exists(url: str, name: str, kind: str = "queue") -> bool:
    """Whether RabbitMQ has a queue (or exchange) of that name: a passive declare, refused when it has not."""
    with Connection(url) as conn:
        channel = conn.channel()
        try:
            if kind == "queue":
                channel.queue_declare(name, passive=True)
            else:
                channel.exchange_declare(name, "direct", passive=True)
            return True
        except conn.channel_errors:
            return False
        finally:
            try:
                channel.close()
            except Exception:
                pass


def listed_queues() -> list[str] | None:
    """Every queue name RabbitMQ lists, when rabbitmqctl runs here (as root); None otherwise."""
    if shutil.which("rabbitmqctl") is None:
        return None
    done = subprocess.run(["rabbitmqctl", "list_queues", "name", "--quiet", "--no-table-headers"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.split() if done.returncode == 0 else None


def test_course_queues_carry_the_namespace_and_expire():
    q = rabbit.queue("ex04_fast", max_priority=10)
    assert q.name == f"{namespace.prefix()}ex04_fast" and q.exchange.name == q.name == q.routing_key
    assert q.queue_arguments == {"x-expires": rabbit.EXPIRES_S * 1000, "x-max-priority": 10}
    assert "x-max-priority" not in rabbit.queue("ex04_fifo").queue_arguments


def test_an_unreachable_rabbitmq_is_one_line_not_an_exception(monkeypatch):
    monkeypatch.setenv("COURSEKIT_RABBITMQ_URL", f"amqp://guest:guest@127.0.0.1:{probe.free_port()}//")
    url, why = rabbit.find()
    assert url is None and "nothing usable answers at COURSEKIT_RABBITMQ_URL" in why and "\n" not in why
    from coursekit.labs import prioritised

    with pytest.raises(ck.BrokerError, match="on_rabbitmq needs RabbitMQ"):
        prioritised.__getattr__("on_rabbitmq")  # as on first use (a module attribute, once made, is kept)
    with pytest.raises(AttributeError):
        prioritised.__getattr__("on_nothing")


def test_a_worker_loads_an_app_named_module_colon_attribute(redis_url):
    assert load_app(LAB).main == "prioritised"
    with pytest.raises(WorkerError, match="is not a Celery app"):
        load_app(f"{LAB}:job")
    with pytest.raises(WorkerError, match="is not a Celery app"):
        load_app(f"{LAB}:nothing_here")


def test_redeclaring_a_queue_with_other_arguments_is_refused(rabbitmq_url):
    """Why the lesson's two RabbitMQ queues have names of their own."""
    with_priority, without = rabbit.queue("ck_redeclare", max_priority=10), rabbit.queue("ck_redeclare")
    with Connection(rabbitmq_url) as conn:
        try:
            with_priority.bind(conn.channel()).declare()
            channel = conn.channel()
            with pytest.raises(conn.channel_errors, match="PRECONDITION_FAILED"):
                without.bind(channel).declare()
        finally:
            cleanup = conn.channel()
            cleanup.queue_delete(with_priority.name)
            cleanup.exchange_delete(with_priority.name)
    assert not exists(rabbitmq_url, with_priority.name)


def test_priorities_on_rabbitmq_and_nothing_is_left_behind(redis_url, rabbitmq_url):
    """A worker of `prioritised:on_rabbitmq` serves a queue with x-max-priority; the recorder samples it (no
    gap for a queue it watches before it exists); `rabbit.delete` leaves none of the app's names on the broker,
    and the app works again afterwards (as when a learner runs the lesson twice in one kernel)."""
    from coursekit.labs import prioritised

    before = listed_queues()
    app = prioritised.on_rabbitmq
    rabbit.purge(app)
    job = prioritised.task_on(app, "job")
    for attempt in (1, 2):
        with ck.record(app, queues=[app.conf.task_default_queue, f"{namespace.prefix()}never_declared"]) as rec:
            sent = [job.apply_async((f"p{p}",), {"seconds": 0.05}, priority=p) for p in (1, None, 9)]
            with ck.Worker(f"{LAB}:on_rabbitmq", prefetch_multiplier=1, config={"task_acks_late": True}):
                done = sorted((ck.get(r) for r in sent), key=lambda r: r["at"])
            rec.settle(*sent)
        assert [r["label"] for r in done] == ["p9", "p1", "pNone"], attempt
        recording = rec.recording
        assert not recording.gaps and recording.priority_lists.empty and len(recording.tasks) == 3
        assert recording.queues.groupby("queue").depth.max().to_dict() == {
            app.conf.task_default_queue: 3, f"{namespace.prefix()}never_declared": 0}
        deleted = rabbit.delete(app)
        assert f"queue {app.conf.task_default_queue}" in deleted
        queues, exchanges = rabbit.names(app)
        assert not [q for q in queues if exists(rabbitmq_url, q)]
        assert not [e for e in exchanges if exists(rabbitmq_url, e, "exchange")]
    after = listed_queues()
    if before is not None and after is not None:
        left = [q for q in set(after) - set(before) if namespace.prefix() in q and ".reply." not in q]
        assert not left, f"queues left on RabbitMQ: {left}"


def test_the_shipped_recording_replays_the_lesson_rabbitmq_run():
    rec = replays.shipped("04_rabbitmq")
    tasks = rec.tasks.assign(queue=lambda t: t.queue.str.rsplit(":", n=1).str[-1])
    assert set(tasks.queue) == {"prioritised_max10", "prioritised_fifo"} and (tasks.state == "SUCCESS").all()
    assert replays.label(rec).startswith("a run recorded on ") and "RabbitMQ" in replays.label(rec)
    with pytest.raises(ck.CourseError, match="no recording named 'missing'"):
        replays.shipped("missing")


@pytest.mark.notebook
def test_the_lesson_replays_rabbitmq_where_it_is_missing(redis_url, monkeypatch):
    """COURSEKIT_RABBITMQ_URL naming a port nothing answers on: the lesson says so in one line, replays the
    shipped recording under a label that says so, and its text holds on the replay too."""
    monkeypatch.setenv("COURSEKIT_RABBITMQ_URL", f"amqp://guest:guest@127.0.0.1:{probe.free_port()}//")
    chapter = next(ch for ch in course.chapters() if ch.id == "04")
    outcome = runner.run(chapter.path("notebooks"))
    assert outcome.ok, outcome.line()
    shown = facts.read(outcome.notebook)
    assert not failures(chapter.stem, "notebooks", shown)
    assert shown["RabbitMQ run order"]["title"].endswith("(replay of a recorded run)")
    printed = [out.get("text", "") for cell in outcome.notebook.cells for out in cell.get("outputs", [])
               if out.get("output_type") == "stream"]
    lines = [line for text in printed for line in text.splitlines()]
    said = [line for line in lines if "RabbitMQ is not reachable" in line]
    assert len(said) == 1 and "replays" in said[0], said  # once, in the first cell
    # section 2 names the recording it replays, in the line above its table
    assert any("RabbitMQ: replay of a run recorded on " in line and " on RabbitMQ " in line for line in lines), lines
