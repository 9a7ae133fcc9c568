"""Chapter 03 exercises: workers. Each check starts real workers side by side on the learner's module (a `Fleet`):
for routing, the ones the learner would deploy (WORKERS, command lines); for prefetch and concurrency, the ones
operations start (the check's own lines), so that only the module's settings decide. Each is judged from the
workers' events: which worker ran every task, when it started, how many ran at once; and, where it says why, from
what each worker answered about itself (the queues it reads, its pool, its prefetch count)."""
from __future__ import annotations

import random
from fnmatch import fnmatch

from ..exercise import Exercise
from ..fleet import Fleet, Job, most_at_once, pool_of
from ..trials import task_named
from ..workerlines import parse_workers


def own_lines(lines: dict[str, str], module: str):
    """The workers the check itself deploys, as WorkerLines (`{module}` standing for the learner's module)."""
    return parse_workers({name: text.format(module=module) for name, text in lines.items()}, module,
                         label="the check's workers")


def reads(fleet: Fleet) -> str:
    """`images reads ['images'], general reads ['ex03_routing']`"""
    return ", ".join(f"{name} reads {queues}" for name, queues in fleet.reads.items())


def started_all(jobs: list[Job], fleet: Fleet, waited: float, among: list[Job] | None = None) -> None:
    """Every job started: one that did not waited in a queue no worker reads, or behind a task that never ended
    (looked for `among` all the check's jobs, then among tasks the check did not send)."""
    for job in jobs:
        if job.runs:
            continue
        readers = fleet.readers(job.queue)
        assert readers, (f"{job.call} waited in queue {job.queue!r}, which no worker reads ({reads(fleet)}): a "
                         "message waits there until one does")
        raise AssertionError(f"{job.call} never started within {waited:g} s, though {', '.join(readers)} "
                             f"read{'s' if len(readers) == 1 else ''} queue {job.queue!r}"
                             + held_up(readers, fleet, among or jobs))


def held_up(readers: list[str], fleet: Fleet, jobs: list[Job]) -> str:
    """What kept the workers reading a queue from starting its message, as a clause (or ""): a task that never
    ended, one of the check's or not, or a prefetch count that lets a worker take nothing."""
    stuck = [j for j in jobs if j.worker in readers and j.runs and j.ended is None]
    if stuck:
        return f": worker {stuck[0].worker} was still running {stuck[0].call}, which {stuck[0].end.describe()}"
    for name in readers:
        if name in fleet.running_others:
            return (f": worker {name} was still running {fleet.running_others[name]}, which the check did not send "
                    "(does your module send it when imported? every worker imports the module)")
    for name in readers:
        count = fleet.stats.get(name, {}).get("prefetch_count")
        if isinstance(count, int) and count < 0:
            return (f": worker {name} reports prefetch_count {count}, and a worker with a negative prefetch count "
                    "takes no message at all (worker_prefetch_multiplier must be 0 or more)")
    return ""


def succeeded(jobs: list[Job]) -> None:
    for job in jobs:
        assert job.end.state == "SUCCESS", f"{job.call} {job.end.describe()}"


class WorkersExercise(Exercise):
    fleet = True


# -- 1. routing -------------------------------------------------------------------------------------------------------
IMAGES = "images"


def route_keys(app) -> list:
    """The keys of the app's task_routes tables, strings and patterns (a router function has none)."""
    routes = app.conf.task_routes
    listed = routes if isinstance(routes, (list, tuple)) else [routes]
    return [k for table in listed if isinstance(table, dict) for k in table]


def key_matches(key, name: str) -> bool:
    """Whether a task_routes key routes the task `name`, as Celery matches it: the exact name, a glob, a regex."""
    if isinstance(key, str):
        return key == name or ("*" in key and fnmatch(name, key))
    return hasattr(key, "match") and bool(key.match(name))


def misrouted(job: Job, app, task_name: str) -> str:
    """Why a resize went elsewhere than `images`: a route that did not apply (a key that names no task), or
    another queue."""
    default = app.conf.task_default_queue
    if job.queue != default:
        return f"{job.call} went to queue {job.queue!r}; send it to the queue named {IMAGES!r}"
    names = [n for n in app.tasks if not n.startswith("celery.")]
    stray = [k for k in route_keys(app) if isinstance(k, str) and not any(key_matches(k, n) for n in names)]
    went = f"{job.call} went to the app's default queue {default!r}: no route applied to it"
    if stray:
        return (f"{went}; task_routes names {stray[0]!r}, which is no task's name: a route is keyed by the task's "
                f"full name, here {task_name!r}")
    return f"{went}; route it by its full name, {task_name!r}"


OTHER_TASKS = ("invoice", "cleanup", "send_report")
"""Tasks the module might add later, by their short names: each must go where the worker for other tasks reads."""


def queue_for(app, name: str) -> str | None:
    """The queue the app's router picks for a task called `name` with no options; None when the router raises
    (a router function written for the module's own tasks only)."""
    try:
        queue = app.amqp.router.route({}, name, (), {})["queue"]
    except Exception:
        return None
    return getattr(queue, "name", queue)


def other_task_goes(name: str, queue: str, app, fleet: Fleet) -> str | None:
    """What is wrong with where a task of another name goes, or None: it must not go to `images`, and a worker
    must read its queue."""
    if queue == IMAGES:
        keys = [k for k in route_keys(app) if key_matches(k, name)]
        why = (f"task_routes key {getattr(keys[0], 'pattern', keys[0])!r} matches it" if keys else
               f"{IMAGES!r} is the app's default queue" if app.conf.task_default_queue == IMAGES else
               "your router sends it there")
        return (f"a task of any other name, such as {name!r}, would go to queue {IMAGES!r} too ({why}): only "
                "resize may go there")
    if not fleet.readers(queue):
        return (f"a task of any other name, such as {name!r}, would go to queue {queue!r}, which no worker reads "
                f"({reads(fleet)}): the worker for every other task must read where such tasks go")
    return None


class Routing(WorkersExercise):
    id = "03.routing"
    module = "ex03_routing"
    functions = ("ROUTES", "WORKERS")

    def run(self, s, observed):
        lines = parse_workers(getattr(s.mod, "WORKERS", None), s.name, mod=s.mod)
        resize, notify = task_named(s.mod, "resize"), task_named(s.mod, "notify")
        fleet = s.start_fleet(lines)
        observed += fleet.describe()
        rng = random.SystemRandom()
        # a flood of image jobs: a general worker that also reads `images` takes some (judged from reads too)
        kinds = rng.sample(["jpg", "png", "webp"], 3)  # all three each time: a route by file name, not task, shows
        calls = [(resize, (f"photo-{rng.randint(100, 999)}.{kinds[n % 3]}", round(rng.uniform(0.1, 0.2), 2)))
                 for n in range(rng.randint(4, 6))]
        calls += [(notify, (f"user-{rng.randint(100, 999)}",)) for _ in range(rng.randint(4, 6))]
        rng.shuffle(calls)
        jobs = fleet.jobs([(task, args, fleet.send(task, args)) for task, args in calls], wait=8)
        observed += [job.describe() for job in jobs]
        others = {name: queue_for(s.app, name) for name in (f"{s.name}.{short}" for short in OTHER_TASKS)}
        for queue in dict.fromkeys(q for q in others.values() if q is not None):
            named = [name.rsplit(".", 1)[-1] for name, q in others.items() if q == queue]
            observed.append(f"tasks named {', '.join(named)} (none in your module) would go to queue {queue!r}")
        return {"jobs": jobs, "fleet": fleet, "app": s.app, "resize": resize.name, "others": others}

    def judge(self, seen, observed):
        jobs, fleet = seen["jobs"], seen["fleet"]
        images = [j for j in jobs if j.task == "resize"]
        others = [j for j in jobs if j.task != "resize"]
        for job in images:
            assert job.queue == IMAGES, misrouted(job, seen["app"], seen["resize"])
        for job in others:
            assert job.queue != IMAGES, (f"{job.call} went to queue {IMAGES!r} too: route only resize there (a "
                                         "pattern such as '*' catches every task)")
        started_all(jobs, fleet, 8)
        for job in images:
            read = fleet.reads[job.worker]
            assert read == [IMAGES], (f"{job.call} ran on worker {job.worker}, which reads {read}: the worker "
                                      f"for images must read {IMAGES!r} only, and no other worker may read it")
        for job in others:
            read = fleet.reads[job.worker]
            assert IMAGES not in read, (f"{job.call} ran on worker {job.worker}, which reads {read}: a worker "
                                        "that reads 'images' must run image jobs only")
        for name, read in fleet.reads.items():  # what this flood happened not to show
            assert not (IMAGES in read and len(read) > 1), (
                f"worker {name} reads {read}: this time it ran no job of the other kind, but in a flood it "
                "would take both; give each worker its own queues (-Q)")
        succeeded(jobs)
        for name, queue in seen["others"].items():  # what the module's next task would do
            if queue is not None:
                wrong = other_task_goes(name, queue, seen["app"], fleet)
                assert wrong is None, wrong


# -- 2. prefetch ------------------------------------------------------------------------------------------------------
IDLE_S = 0.4
"""An idle stretch of another worker that makes a waiting short task a fault: longer than the pauses between tasks
on a busy machine (about 10 ms here, tenths of a second under load), and shorter than what a worker that holds
lookups back leaves the other idle (the long task, 1.5 s or more, less the lookups the other ran)."""


def idle_stretch(fleet: Fleet, jobs: list[Job], worker: str, begun: float, ended: float) -> float:
    """The longest stretch within [begun, ended] in which `worker` ran none of `jobs` (each worker runs -c 1)."""
    busy = sorted((r.started, r.ended if r.ended is not None else ended) for j in jobs for r in j.runs
                  if r.worker == worker)
    longest, free_from = 0.0, begun
    for start, end in busy:
        if end <= free_from:
            continue
        longest = max(longest, min(start, ended) - free_from)
        free_from = max(free_from, end)
        if free_from >= ended:
            break
    return max(longest, ended - free_from)


class Prefetch(WorkersExercise):
    id = "03.prefetch"
    module = "ex03_prefetch"
    functions = ("SETTINGS",)
    LINES = {"a": "celery -A {module} worker -c 1", "b": "celery -A {module} worker -c 1"}

    def run(self, s, observed):
        export, lookup = task_named(s.mod, "export"), task_named(s.mod, "lookup")
        fleet = s.start_fleet(own_lines(self.LINES, s.name))
        observed += fleet.describe()
        rng = random.SystemRandom()
        seconds = round(rng.uniform(1.5, 1.9), 1)
        first = fleet.send(export, (seconds,))
        # the hard case: short tasks arrive while one worker is busy with the long one
        began = fleet.wait_started(first, 6)
        shorts = [(lookup, (n,)) for n in rng.sample(range(100, 1000), rng.randint(5, 7))]
        sent = [(export, (seconds,), first)] + [(task, args, fleet.send(task, args)) for task, args in shorts]
        wait = seconds + 6 if began else 1.0  # a long task no worker started in 6 s will not start now
        jobs = fleet.jobs(sent, wait=wait)
        observed += [job.describe() for job in jobs]
        return {"jobs": jobs, "fleet": fleet, "seconds": seconds, "waited": wait + (0 if began else 6),
                "late": _acks_late(s.app, export),
                "concurrency": s.app.conf.worker_concurrency}

    def judge(self, seen, observed):
        jobs, fleet, seconds = seen["jobs"], seen["fleet"], seen["seconds"]
        long, shorts = jobs[0], jobs[1:]
        started_all(jobs, fleet, seen["waited"])
        succeeded([long])
        assert long.ended - long.started >= 0.9 * seconds, (
            f"{long.call} took {long.ended - long.started:.2f} s; it must take its {seconds} s: keep its work, the "
            "check needs a long task")
        waited = []
        for job in shorts:
            if job.worker != long.worker or job.started < long.ended - 0.05:
                continue  # it did not wait behind the long task
            for other in fleet.reads:
                if other != long.worker:
                    gap = idle_stretch(fleet, jobs, other, job.sent or long.started, job.started)
                    if gap >= IDLE_S:
                        waited.append((job, other, gap))
                        break
        if waited:
            job, other, gap = waited[0]
            stats = fleet.stats[long.worker]
            count = stats.get("prefetch_count", "?")
            why = (f"worker {long.worker} (prefetch_count {count}, acks_late {seen['late']}) had reserved "
                   f"{len(waited)} of the {len(shorts)} short tasks while it ran {long.call}")
            if count == 1 and not seen["late"]:
                why += ("; a prefetch count of 1 still reserves one more message while a task runs when its "
                        "message was acknowledged as it started")
            elif count == 0:
                why += "; a prefetch count of 0 means no limit at all"
            if seen["concurrency"] not in (None, 1):
                why += (f" (worker_concurrency={seen['concurrency']} changes nothing here: the workers are started "
                        "with -c 1)")
            raise AssertionError(f"{job.call} waited {job.started - job.sent:.1f} s and started only after "
                                 f"{long.call} ended, while worker {other} sat idle for {gap:.1f} s: {why}")
        succeeded(shorts)


def _acks_late(app, task) -> bool:
    """Whether `task`'s message is acknowledged after it runs (its own option, or the app's setting)."""
    return bool(getattr(task, "acks_late", app.conf.task_acks_late))


# -- 3. a burst on one worker -------------------------------------------------------------------------------------------
class Burst(WorkersExercise):
    id = "03.burst"
    module = "ex03_burst"
    functions = ("SETTINGS",)
    LINES = {"web": "celery -A {module} worker"}
    SIZE = 10

    def run(self, s, observed):
        fetch = task_named(s.mod, "fetch")
        fleet = s.start_fleet(own_lines(self.LINES, s.name))
        observed += fleet.describe()
        rng = random.SystemRandom()
        seconds = round(rng.uniform(0.6, 0.9), 2)
        calls = [(fetch, (f"https://shop.example/item/{n}", seconds)) for n in rng.sample(range(1000, 9999), self.SIZE)]
        wait = 2 * seconds + 2.5  # all at once take one wait (plus a busy machine's delays); two at a time, five
        jobs = fleet.jobs([(task, args, fleet.send(task, args)) for task, args in calls], wait=wait)
        observed += [job.describe() for job in jobs]
        ran = [j for j in jobs if j.runs]
        if ran:
            last = max((j.ended for j in ran if j.ended is not None), default=None)
            first = min(j.started for j in ran)
            observed.append(f"{len(ran)} fetches started, " + (f"the first start to the last end: {last - first:.2f} s"
                                                               if last is not None else "none ended"))
        return {"jobs": jobs, "fleet": fleet, "seconds": seconds, "wait": wait, "rate_limit": fetch.rate_limit}

    def judge(self, seen, observed):
        jobs, fleet, seconds = seen["jobs"], seen["fleet"], seen["seconds"]
        worker = fleet.workers[0].name
        stats = fleet.stats[worker]
        pool = pool_of(stats)
        started_all([j for j in jobs if not fleet.readers(j.queue)], fleet, seen["wait"], among=jobs)
        failed = [j for j in jobs if j.end.state == "FAILURE"]
        assert not failed, f"{failed[0].call} {failed[0].end.describe()}"
        for job in jobs:
            if job.ended is not None:
                took = job.ended - job.started
                assert took >= 0.9 * seconds, (f"{job.call} took {took:.2f} s; each fetch waits {seconds} s on the "
                                               "network: keep that wait, make the worker run many at once")
        ends = [j.ended for j in jobs if j.ended is not None]
        until = max(ends + [j.started for j in jobs if j.runs], default=0.0) + seconds
        at_once = most_at_once(jobs, until)
        size = stats.get("pool", {}).get("max-concurrency")
        if at_once < self.SIZE and isinstance(size, int) and size >= self.SIZE:
            limit = seen["rate_limit"]
            raise AssertionError(
                f"at most {at_once} of the {self.SIZE} fetches ran at once on worker {worker}, though its {pool} "
                "had room for all: " + (f"fetch has a rate limit of {limit!r} (task_default_rate_limit, or its "
                                        "own), which spaces out the starts: leave it out" if limit else
                                        "the others started later (a busy machine? check again)"))
        assert at_once >= self.SIZE, (
            f"at most {at_once} of the {self.SIZE} fetches ran at once on worker {worker} ({pool}); the others "
            f"waited for a free slot. A worker runs as many tasks at once as its pool has processes or threads: "
            "set that in your app's settings, the worker is started with no options")
        succeeded(jobs)


routing = Routing()
prefetch = Prefetch()
burst = Burst()
