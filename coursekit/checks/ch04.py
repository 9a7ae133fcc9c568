"""Chapter 04 exercises: priorities, judged by the order in which the check's one-process worker (`-c 1`) ran the
tasks the check sent, as the worker's events record it.

04.urgent (Redis) and 04.rabbitmq build the hard case themselves: a blocker keeps the worker busy, a backlog is
sent with a plain `.delay()` (the way old code sends it), the learner's function sends two urgent calls, one amid
the backlog and one last; then the blocker lets go. When the urgent calls did not run next, the messages'
priorities and what the worker had taken ahead (prefetch) while the blocker ran say why. 04.tiers sends three
kinds of work, shuffled, before the worker reads the queue, and expects them back tier by tier.
"""
from __future__ import annotations

import random
import tempfile
import time
from bisect import bisect
from dataclasses import dataclass, field
from pathlib import Path

from celery.result import AsyncResult, EagerResult

from .. import namespace
from ..evidence import Ending, Sent, ending
from ..calls import call, send
from ..budget import budget
from ..exercise import Exercise
from ..outcomes import Incorrect, Uncheckable
from ..labs.backlog import HOLD
from ..trials import task_named

REDIS_STEPS = [0, 3, 6, 9]
"""kombu's default `priority_steps`: its Redis transport keeps one list per step."""
SETTLE_S = 0.4
"""How long the check lets the busy worker take what its prefetch allows before it sends what comes next."""
RUN_WAIT_S = 6.0
"""How long, at most, the check waits for all its tasks to end once nothing holds the worker any more."""


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def shown(priority) -> str:
    return "no priority" if priority is None else f"priority {priority}"


def priority_steps(app) -> list[int]:
    return sorted((app.conf.broker_transport_options or {}).get("priority_steps") or REDIS_STEPS)


def redis_list(app, priority) -> int:
    """The step whose list a message of `priority` lands in on Redis, as kombu files it: clamped to 0-9 (none
    counts as 0), then the highest step not above it."""
    steps = priority_steps(app)
    value = 0 if priority is None else max(0, min(int(priority), 9))
    return steps[bisect(steps, value) - 1]


def redis_steps(app, *priorities) -> str:
    """How kombu files priorities on Redis, with what else bears on `priorities` landing in one list."""
    steps = priority_steps(app)
    if steps == REDIS_STEPS:
        said = "kombu keeps one list per step 0, 3, 6, 9 (priorities 0-2 share the first, 3-5 the next, ...)"
    else:
        said = f"kombu keeps one list per step {', '.join(map(str, steps))}"
    if any(isinstance(p, int) and not 0 <= p <= 9 for p in priorities):
        said += ", and it counts a priority above 9 as 9, below 0 as 0"
    return said + between_queues(app)


def between_queues(app) -> str:
    """A clause for a learner who reached for kombu's queue_order_strategy, which does not rank messages."""
    if not (app.conf.broker_transport_options or {}).get("queue_order_strategy"):
        return ""
    return "; queue_order_strategy orders the queues a worker reads, not the messages inside one queue"


def both_carried(app, priority) -> str:
    """Urgent and backlog messages that carried the same `priority`."""
    said = f"the urgent and the backlog messages both carried {shown(priority)}: nothing told them apart"
    if priority is not None and priority == app.conf.task_default_priority:
        said += (" (it is the app's task_default_priority, which Celery puts on every call that sets none: give the "
                 "urgent call its own, with apply_async's priority= option)")
    return said


@dataclass
class Sends:
    """The tasks a check sent, in the order sent: a label, its kind, the AsyncResult, the message, how it ended."""

    labels: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    results: list[AsyncResult] = field(default_factory=list)
    messages: list[Sent] = field(default_factory=list)
    endings: list[Ending] = field(default_factory=list)

    def add(self, label: str, kind: str, result: AsyncResult, message: Sent) -> None:
        self.labels.append(label)
        self.kinds.append(kind)
        self.results.append(result)
        self.messages.append(message)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.results]

    def of(self, kind: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == kind]

    def priority(self, kind: str):
        """The priority the messages of `kind` carried (all of a kind come from one task, so they agree)."""
        return self.messages[self.of(kind)[0]].priority

    def wait(self) -> None:
        begun = time.monotonic()
        self.endings = [ending(r, budget(max(0.1, begun + RUN_WAIT_S - time.monotonic()))) for r in self.results]


def settings(app) -> dict[str, str]:
    """The settings the app's code gave it, as text (a value changed in place shows too)."""
    return {key: repr(value) for key, value in app.conf.changes.items()}


def published(s, result: AsyncResult, label: str, task, item, begun: float) -> Sent:
    """The message this process published for `result`, which must be `task(item)`."""
    mine = [m for m in s.sent.of(result.id) if m.at >= begun]
    if not mine:
        raise Incorrect(f"{label} published no message for the AsyncResult it returned: send the task to the "
                        "broker with apply_async, and return what it gives")
    message = mine[0]
    name = task.name.rsplit(".", 1)[-1]
    if message.task != task.name:
        raise Incorrect(f"{label} sent a task named {message.task!r}; the worker knows {name} by its full name, "
                        f"{task.name!r}: send it through the task itself, {name}.apply_async(...)")
    if tuple(message.args) != (item,) or message.kwargs:
        raise Incorrect(f"{label} sent {message.label()}; the check called it with {item!r}, so send "
                        f"{name}({item!r}): pass the argument on")
    return message


def on_the_task(tasks) -> list[str]:
    """A note when a priority is set on the task itself: it works in 5.7, but Celery deprecates it. Binding a task
    copies task_default_priority onto its class (None too), so only a value other than the app's counts."""
    names = [t.name.rsplit(".", 1)[-1] for t in tasks
             if vars(t.__class__).get("priority") not in (None, t.app.conf.task_default_priority)]
    if not names:
        return []
    return [f"note: priority= on @app.task ({', '.join(names)}) works in Celery 5.7, but it is deprecated and has "
            "no effect from 6.0: task_routes (or task_default_priority) is the place that lasts"]


def unrouted(app, task_name: str) -> str:
    """When the app has routes and none gives `task_name` a priority, a clause that gives the likely reason: a key
    that is not the task's full name. Otherwise ""."""
    if not app.conf.task_routes or app.amqp.router.route({}, task_name).get("priority") is not None:
        return ""
    short = task_name.rsplit(".", 1)[-1]
    return (f"no route in task_routes gave {short} one: a route's key is the task's full name, {task_name!r}, or a "
            f"pattern such as '*.{short}'")


def numbers(sends: Sends) -> None:
    """A priority is a whole number. kombu's Redis transport reads one with int() and files what int() cannot read
    as 0 without a word, so a `priority="high"` can look right by accident; RabbitMQ refuses any string."""
    for label, message, kind in zip(sends.labels, sends.messages, sends.kinds):
        value = message.priority
        if value is None or isinstance(value, int) or kind == "blocker":  # the blocker carries the backlog's
            continue
        try:
            read = f"reads it as {int(value)}, by luck"
        except (TypeError, ValueError):
            read = "files it as 0, the highest, without a word"
        raise AssertionError(f"{label} carried priority={value!r}, a {type(value).__name__}: a priority is a whole "
                             "number (0-9 on Redis, 0 up to the queue's x-max-priority on RabbitMQ); kombu's Redis "
                             f"transport {read}, and RabbitMQ refuses it")


def not_eager(app) -> None:
    """Eagerly, every task would run in the check's own process as it is sent: the blocker would block the check."""
    if app.conf.task_always_eager:
        raise Incorrect("task_always_eager=True runs every task where it is called, in the sending process: no "
                        "broker, no worker, so nothing is queued and no priority counts",
                        fix="leave task_always_eager off")


def wrong_queue(s, sends: Sends) -> None:
    """A message routed to a queue the check's worker does not read would wait forever: say so, not "no result"."""
    queue = s.app.conf.task_default_queue
    for label, message in zip(sends.labels, sends.messages):
        if message.queue and message.queue != queue:
            raise Incorrect(f"{label} went to queue {message.queue!r}, which the worker does not read (it reads "
                            f"{queue!r}, the app's queue): jump the backlog inside the one queue, with a priority "
                            "(a queue of its own needs a worker of its own)")


def run_order(s, sends: Sends) -> list[int]:
    """Indexes into `sends` in the order the worker started them. Each task must have run once, in the worker's
    pool, and succeeded."""
    runs = s.runs(sends.ids)
    for label, end, task_id in zip(sends.labels, sends.endings, sends.ids):
        if end.state != "SUCCESS":
            raise Incorrect(f"{label} {end.describe()}; every task must run once and succeed (keep the body "
                            "`return work(...)`)")
        mine = runs[task_id]
        if len(mine) != 1:
            raise Incorrect(f"{label} ran {len(mine)} times; each message must run once")
        if not mine[0]["in_pool"]:
            raise Incorrect(f"{label} did not run in the check worker's pool process")
    return sorted(range(len(sends.ids)), key=lambda i: runs[sends.ids[i]][0]["at"])


class JumpTheBacklog(Exercise):
    """04.urgent and 04.rabbitmq: urgent calls must overtake a backlog that a plain `.delay()` sent before them.
    Subclasses say how their broker ranks priorities (`rank`) and explain a tie or a wrong direction."""

    task = ""
    """The task old code sends with a plain `.delay()`."""
    sender = ""
    """The learner's function that sends one call of it urgently."""
    prefix = ""
    """How the backlog's items are named."""

    @property
    def functions(self):
        return (self.task, self.sender)

    # -- the experiment ----------------------------------------------------------------------------------
    def run(self, s, observed):
        rng = random.SystemRandom()
        task = task_named(s.mod, self.task)
        send_now = getattr(s.mod, self.sender)
        if not callable(send_now):
            raise Incorrect(f"{self.sender} is {type(send_now).__name__}, not a function")
        not_eager(s.app)
        tag, n = rng.randint(100, 999), rng.randint(4, 7)
        mid = rng.randint(1, n - 1)  # the first urgent call comes after `mid` backlog messages, the second last
        sends = Sends()
        with tempfile.TemporaryDirectory(prefix="coursekit-gate-") as folder:
            gate = Path(folder) / "gate"
            s.consume()
            self._hold(s, sends, task, gate)
            for i in range(1, n + 1):
                item = f"{self.prefix}-{tag}-{i}"
                begun = time.time()
                result = send(task, (item,), s.source)
                sends.add(f"{self.task}({item!r})", "backlog", result,
                          published(s, result, "the check", task, item, begun))
                if i == 1:
                    time.sleep(0.2)  # an early-acknowledging worker takes this one: let it, however busy we are
                if i == mid:
                    self._urgent(s, sends, task, send_now, f"urgent-{tag}-a")
            self._urgent(s, sends, task, send_now, f"urgent-{tag}-b")
            wrong_queue(s, sends)
            time.sleep(SETTLE_S)
            opened = time.time()
            gate.touch()  # the blocker ends; the worker takes the message the broker ranks first
            sends.wait()
        order = run_order(s, sends)
        held = self._taken_ahead(s, sends, opened)
        observed.append("order run: " + ", ".join(sends.labels[i] for i in order))
        observed.append(f"messages: backlog {shown(sends.priority('backlog'))}, urgent "
                        f"{shown(sends.priority('urgent'))}")
        observed.append(f"messages the worker had taken while the blocker ran: {held}")
        observed += on_the_task([task])
        return {"sends": sends, "order": order, "held": held, "task": task, "app": s.app}

    def _hold(self, s, sends: Sends, task, gate: Path) -> None:
        """Send the blocker and wait until it runs: from then on the worker is busy until the gate opens."""
        item = HOLD + str(gate)
        begun = time.time()
        result = send(task, (item,), s.source)
        sends.add("the blocker", "blocker", result, published(s, result, "the check", task, item, begun))
        wrong_queue(s, sends)
        started = Path(f"{gate}.started")
        deadline = time.monotonic() + budget(10)
        poll = time.monotonic()
        while not started.exists():
            now = time.monotonic()
            if now > deadline:
                self._blocker_failed(s, result)
            if now >= poll:  # a blocker that failed at once is told at once, not after 10 s
                if result.ready():
                    self._blocker_failed(s, result)
                poll = now + 0.2
            time.sleep(0.02)
        time.sleep(SETTLE_S)  # the worker has acknowledged it (early) or not (late), and waits for more

    def _blocker_failed(self, s, result) -> None:
        """The blocker ended, or did not reach the lab's work() within 10 s: say which."""
        end = ending(result, 0.1)
        if end.state in ("SUCCESS", "FAILURE"):
            raise Incorrect(f"the check's first {self.task}() {end.describe()} without running the lab's work(): "
                            "keep the body `return work(...)`")
        if s.runs([result.id])[result.id]:
            raise Incorrect(f"the check's first {self.task}() started on the worker but had not reached the lab's "
                            "work() after 10 s: keep the body `return work(...)`")
        raise Uncheckable("the check's first task did not start within 10 s",
                          fix="check again; the machine may be very busy")

    def _urgent(self, s, sends: Sends, task, send_now, item: str) -> None:
        label = f"{self.sender}({item!r})"
        before = settings(s.app)
        called = call(send_now, item, name=label, source=s.source)
        after = settings(s.app)
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        if changed:
            raise Incorrect(f"{label} changed the app's settings while it ran ({', '.join(changed)}): the worker "
                            "read them when it started, long before; give them to make_app(...)")
        value = called.value
        if isinstance(value, EagerResult):
            raise Incorrect(f"{label} returned an EagerResult: apply() ran the task here, in this process; send "
                            "it to the worker")
        if not isinstance(value, AsyncResult):
            raise Incorrect(f"{label} returned {type(value).__name__} {value!r}; return the AsyncResult that "
                            "apply_async() gives")
        message = published(s, value, label, task, item, called.begun)
        more = [m for m in s.sent.between(called.begun, called.ended) if m.id != value.id]
        if more:
            raise Incorrect(f"{label} sent {1 + len(more)} messages ({', '.join(m.label() for m in [message, *more])})"
                            ": the worker runs every one of them; send the task once")
        if message.eta is not None:
            raise Incorrect(f"{label} sent it with an eta {message.eta - called.begun:.1f} s ahead (a countdown): a "
                            "worker holds such a message until then, whatever its priority; send it at once")
        sends.add(label, "urgent", value, message)

    @staticmethod
    def _taken_ahead(s, sends: Sends, opened: float) -> int:
        """How many of the waiting messages the worker had received (reserved) before the blocker ended."""
        rec = s.recording()
        received = rec.tasks.set_index("task_id").received.dropna()
        waiting = [sends.ids[i] for i in sends.of("backlog") + sends.of("urgent")]
        return sum(1 for i in waiting if i in received.index and rec.started_at + received[i] < opened)

    # -- the verdict -------------------------------------------------------------------------------------
    def judge(self, seen, observed):
        sends, order = seen["sends"], seen["order"]
        numbers(sends)
        rank = {index: place for place, index in enumerate(order, 1)}
        urgent = sends.of("urgent")
        late = [i for i in urgent if rank[i] > 1 + len(urgent)]
        if not late:
            return
        worst = max(late, key=rank.get)
        ahead = sum(1 for i in order[:rank[worst] - 1] if sends.kinds[i] == "backlog")
        where = (f"{sends.labels[worst]} ran {ordinal(rank[worst])} of {len(order)}, after the blocker and {ahead} "
                 f"of the {len(sends.of('backlog'))} backlog tasks")
        raise AssertionError(f"{where}: {self.cause(seen)}")

    def cause(self, seen) -> str:
        sends, app = seen["sends"], seen["app"]
        urgent, backlog = sends.priority("urgent"), sends.priority("backlog")
        first, last = self.rank(app, urgent), self.rank(app, backlog)
        if first > last:
            return self.wrong_way(app, urgent, backlog)
        if first == last:
            return self.tie(app, urgent, backlog, seen["task"].name)
        return self.prefetch(seen)

    def prefetch(self, seen) -> str:
        held, task, app = seen["held"], seen["task"], seen["app"]
        if not held:
            return "the priorities were right, and the worker took nothing ahead, yet the order was wrong"
        said = (f"the priorities were right, but while the blocker ran the worker had already taken {held} of the "
                "waiting messages (prefetch), and it runs what it holds in the order it took them")
        multiplier = app.conf.worker_prefetch_multiplier
        if not task.acks_late and multiplier == 1:
            return said + ("; acknowledging early, a worker reserves one more message while a task runs, even at "
                           "worker_prefetch_multiplier=1: acknowledge late (task_acks_late=True)")
        if task.acks_late and multiplier != 1:
            allows = "every waiting message (0 means no limit)" if multiplier == 0 else f"{multiplier} messages"
            return said + (f"; worker_prefetch_multiplier={multiplier} lets it reserve {allows} per process: set it "
                           "to 1")
        if app.conf.worker_disable_prefetch and self.broker != "redis":
            said += "; worker_disable_prefetch works on Redis only (the worker logs that it ignores it)"
        return said + ("; set task_acks_late=True and worker_prefetch_multiplier=1: only then does a busy worker "
                       "reserve nothing")

    # -- what differs between brokers ----------------------------------------------------------------------
    def rank(self, app, priority) -> int:
        """Lower runs first."""
        raise NotImplementedError

    def wrong_way(self, app, urgent, backlog) -> str:
        raise NotImplementedError

    def tie(self, app, urgent, backlog, task_name: str) -> str:
        raise NotImplementedError


class Urgent(JumpTheBacklog):
    id = "04.urgent"
    module = "ex04_urgent"
    task, sender, prefix = "resize", "resize_now", "photo"

    def rank(self, app, priority):
        return redis_list(app, priority)

    def wrong_way(self, app, urgent, backlog):
        fix = "send them with 0"
        if redis_list(app, backlog) == 0:  # the backlog shares the first list: 0 alone will not do
            fix += ", and give the backlog a number above 0 (task_default_priority, or a route in task_routes)"
        return (f"the urgent messages carried {shown(urgent)} and the backlog {shown(backlog)}"
                f"{' (which Redis counts as 0)' if backlog is None else ''}: on Redis 0 is the HIGHEST priority and "
                f"9 the lowest (RabbitMQ is the other way round), so the urgent ones queued behind the backlog: {fix}")

    def tie(self, app, urgent, backlog, task_name):
        if backlog is None:
            why = unrouted(app, task_name)
            return (f"the backlog carried no priority{f' ({why})' if why else ''}, which Redis counts as 0, the "
                    f"highest: the same list as the urgent {shown(urgent)}, first in, first out. Give the backlog a "
                    "number above 0 (task_default_priority, or a route in task_routes) and send urgent ones with 0"
                    f"{between_queues(app)}")
        if urgent == backlog:
            return both_carried(app, urgent)
        return (f"the urgent {shown(urgent)} and the backlog {shown(backlog)} land in the same Redis list: "
                f"{redis_steps(app, urgent, backlog)}; first in, first out within a list")


class RabbitMQ(JumpTheBacklog):
    id = "04.rabbitmq"
    module = "ex04_rabbitmq"
    broker = "rabbitmq"
    task, sender, prefix = "email", "email_now", "newsletter"

    def run(self, s, observed):
        queue, ns = s.app.conf.task_default_queue, namespace.prefix()
        if not queue.startswith(ns):  # checked before anything declares it
            raise Incorrect(f"the app's queue {queue!r} is outside the course's namespace {ns!r}: on RabbitMQ every "
                            "queue of the course carries it in its name, so that a check deletes what it declared "
                            "and nothing else", fix="keep the queue make_app names (leave task_default_queue alone)")
        # a message sent to any other queue would declare it on the broker, where it would outlive the check with
        # the message in it: Celery refuses such a queue (QueueNotFound) instead of creating it
        queues, was = s.app.amqp.queues, s.app.amqp.queues.create_missing
        queues.create_missing = False
        try:
            return super().run(s, observed)
        except Incorrect as exc:
            if "QueueNotFound" not in str(exc):
                raise
            raise Incorrect(f"{exc}: the check's worker reads only the app's queue, {queue!r}",
                            fix="jump the backlog inside the one queue, with a priority (a queue of its own needs a "
                                "worker of its own)") from None
        finally:
            queues.create_missing = was  # the learner's app, in the learner's kernel, as it was before the check

    @staticmethod
    def max_priority(app):
        queue = app.amqp.queues.get(app.conf.task_default_queue)
        if queue is None:
            return None
        return (queue.queue_arguments or {}).get("x-max-priority", queue.max_priority)

    def rank(self, app, priority):
        ceiling = self.max_priority(app)
        return 0 if ceiling is None else -min(priority or 0, ceiling)

    def wrong_way(self, app, urgent, backlog):
        return (f"the urgent messages carried {shown(urgent)} and the backlog {shown(backlog)}: on RabbitMQ a "
                "HIGHER number is a higher priority (Redis is the other way round), so the urgent ones queued "
                "behind the backlog: send them with a number above the backlog's")

    def tie(self, app, urgent, backlog, task_name):
        ceiling = self.max_priority(app)
        if ceiling is None:
            return (f"the queue {app.conf.task_default_queue!r} was declared without x-max-priority, so RabbitMQ "
                    f"ignored the messages' priorities (urgent {shown(urgent)}, backlog {shown(backlog)}) and kept "
                    "them first in, first out: declare it with a maximum (task_queue_max_priority, or "
                    "queue_arguments={'x-max-priority': 10})")
        if max(urgent or 0, backlog or 0) > ceiling:
            return (f"the queue's x-max-priority is {ceiling}, and RabbitMQ counts any priority above it as "
                    f"{ceiling}: the urgent {shown(urgent)} and the backlog {shown(backlog)} ended equal")
        if not urgent:
            return (f"the urgent messages carried {shown(urgent)} and the backlog {shown(backlog)}, which RabbitMQ "
                    "ranks alike, as 0, the LOWEST: on RabbitMQ a higher number is a higher priority (Redis is the "
                    f"other way round), so send the urgent ones with a number from 1 up to the queue's {ceiling}")
        return both_carried(app, urgent)


TIER_NAMES = {"reply": "interactive", "invoice": "normal", "export": "bulk"}


class Tiers(Exercise):
    """Three kinds of work sent with plain `.delay()`, shuffled, while the worker reads nothing; then it reads the
    queue, and must run every reply, then every invoice, then every export, each kind first in, first out."""

    id = "04.tiers"
    module = "ex04_tiers"
    functions = tuple(TIER_NAMES)

    def run(self, s, observed):
        rng = random.SystemRandom()
        tasks = [task_named(s.mod, name) for name in self.functions]
        not_eager(s.app)
        tag = rng.randint(100, 999)
        plan = [tier for tier in range(3) for _ in range(rng.randint(2, 3))]
        rng.shuffle(plan)
        plan.remove(0), plan.remove(2)
        plan = [2, *plan, 0]  # the hard case: bulk sent first, a reply last
        sends, count = Sends(), [0, 0, 0]
        for tier in plan:
            name = self.functions[tier]
            count[tier] += 1
            item = f"{name}-{tag}-{count[tier]}"
            begun = time.time()
            result = send(tasks[tier], (item,), s.source)
            sends.add(f"{name}({item!r})", name, result, published(s, result, "the check", tasks[tier], item, begun))
        wrong_queue(s, sends)
        s.consume()  # only now may the worker read: everything waits in the queue, ranked by the broker
        sends.wait()
        order = run_order(s, sends)
        observed.append("sent: " + ", ".join(sends.labels))
        observed.append("order run: " + ", ".join(sends.labels[i] for i in order))
        observed.append("messages: " + ", ".join(f"{name} {shown(sends.priority(name))}" for name in self.functions))
        observed += on_the_task(tasks)
        return {"sends": sends, "order": order, "app": s.app}

    def judge(self, seen, observed):
        sends, order, app = seen["sends"], seen["order"], seen["app"]
        numbers(sends)
        tier = {name: number for number, name in enumerate(self.functions)}
        expected = sorted(order, key=lambda i: (tier[sends.kinds[i]], i))
        if order == expected:
            return
        place = {index: p for p, index in enumerate(order, 1)}
        key = {i: (tier[sends.kinds[i]], i) for i in order}
        # the first task that should have run early and did not, and the first that ran ahead of it
        late = next(i for i in expected if any(key[a] > key[i] for a in order[:place[i] - 1]))
        early = next(a for a in order if key[a] > key[late])
        said = (f"{sends.labels[early]} ran {ordinal(place[early])} of {len(order)}, before "
                f"{sends.labels[late]} ({ordinal(place[late])})")
        first, then = sends.kinds[late], sends.kinds[early]  # `first` should have run first
        if first == then:
            raise AssertionError(f"{said}: two {first} tasks out of the order they were sent in")
        p_first, p_then = sends.priority(first), sends.priority(then)
        on = f"{first} ({TIER_NAMES[first]}) carried {shown(p_first)}, {then} ({TIER_NAMES[then]}) {shown(p_then)}"
        default = app.conf.task_default_priority
        for kind in (first, then):
            task_name = sends.messages[sends.of(kind)[0]].task
            routed = app.amqp.router.route({}, task_name).get("priority")
            if default is not None and routed is not None and routed != sends.priority(kind):
                raise AssertionError(
                    f"{said}: {on}. task_routes gives {kind} priority {routed}, but task_default_priority={default} "
                    "won: Celery puts the default on every call as the task's own option, and a call's own options "
                    "beat its route")
        l_first, l_then = redis_list(app, p_first), redis_list(app, p_then)
        if l_first > l_then:
            raise AssertionError(f"{said}: {on}; on Redis 0 is the HIGHEST priority and 9 the lowest")
        if l_first == l_then:
            why = next((unrouted(app, sends.messages[sends.of(k)[0]].task) for k in (first, then)
                        if sends.priority(k) is None), "")
            none = f" (no priority counts as 0{'; ' + why if why else ''})" if None in (p_first, p_then) else ""
            raise AssertionError(f"{said}: {on}{none}, and both land in the same Redis list, where messages keep the "
                                 f"order they were sent in: {redis_steps(app, p_first, p_then)}. Give each kind a "
                                 "number in a list of its own")
        raise AssertionError(f"{said}, though {on}")


urgent = Urgent()
rabbitmq = RabbitMQ()
tiers = Tiers()
