"""Chapter 08 exercises: memory and results, judged from what the check's worker did to memory and to Redis.

08.recycle sends 30 leaky tasks and reads the recorder's memory samples of every pool child: none may pass the
bound, and the children must not be replaced after every task. 08.results sends a burst of clicks and a few reports
and counts the result keys they left in Redis, with their TTLs. 08.oom caps the worker's pool child (a memory
cgroup, or a watchdog standing in for the kernel, coursekit.oom), sends batches of which one outgrows the cap, and
expects every batch to end SUCCESS and in the ledger.
"""
from __future__ import annotations

import random
import time

import redis

from ..budget import budget
from ..calls import send
from ..evidence import Ending, ending
from ..exercise import Exercise
from ..ledger import Ledger
from ..oom import MemoryCap
from ..outcomes import Incorrect, Uncheckable
from ..trials import task_named

MB = 1 << 20

KILL_WAIT_S = 12.0
"""How long the OOM check waits for its cap to kill a child (CI once saw none within 8 s, on a loaded machine)."""


def setting(app, name: str):
    return app.conf.get(name)


def number(value) -> bool:
    """Whether a limit is a number billiard can compare (True and "90000" are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mib(kib) -> str:
    """A limit in KiB as MiB, or GiB once it is that big, in plain digits (never 9.2e+04)."""
    return f"{kib / 1024:,.4g} MiB" if kib < 1 << 20 else f"{kib / (1 << 20):,.0f} GiB"


def ignored_task_options(task) -> list[str]:
    """Worker settings given as options of the task (@app.task(max_memory_per_child=...)): Celery keeps any
    keyword as an attribute of the task and never reads these."""
    names = ("max_memory_per_child", "max_tasks_per_child", "worker_max_memory_per_child",
             "worker_max_tasks_per_child")
    return [f"{name}={getattr(task, name)!r}" for name in names if getattr(task, name, None) is not None]


def child_peaks(rec, node: str) -> dict[int, float]:
    """Each pool child of `node` -> the highest RSS the recorder sampled, in MiB."""
    mem = rec.memory
    kids = mem[(mem.node == node) & (mem.role == "child")]
    return {int(pid): round(float(rss) / MB, 1) for pid, rss in kids.groupby("pid").rss.max().items()}


# -- 1. recycle -----------------------------------------------------------------------------------------------------
class Recycle(Exercise):
    """30 renders, each caching 3 or 4 MiB for good in its pool child (`-c 1`): every child must stay under
    BOUND_MB of RSS, judged on the recorder's samples and on what each task measured in its child as it ended; and
    the children must live for several tasks each (recycling after every task costs a fork per task)."""

    id = "08.recycle"
    module = "ex08_recycle"
    functions = ("SETTINGS",)
    tasks = 30
    bound_mb = 90
    """A fresh child holds about 43-45 MiB; 30 x 3-4 MiB more would take it to 135-165 MiB. Below lesson 08's
    100 000 KiB (97.7 MiB), so that the lesson's value fails every time: a child grows past its limit by a task."""
    fewest_tasks = 3
    wait_s = 18.0
    """How long the check waits for the renders, from the sending."""
    """On average each child must run at least this many tasks: fewer means recycling after (nearly) every one."""

    def run(self, s, observed):
        task = task_named(s.mod, "render")
        rng = random.SystemRandom()
        mb, tag = rng.choice([3, 4]), rng.randint(100, 999)
        s.recorder.interval = 0.05  # the leak climbs 3-4 MiB a render (0.05 s each): sample as often
        s.consume()
        begun = time.monotonic()
        results = [send(task, (f"page-{tag}-{i}", mb), s.source) for i in range(1, self.tasks + 1)]
        # 30 renders take 3-4 s; a child forked for every task makes it 10 s or more: judge what ended by then
        deadline = time.monotonic() + budget(self.wait_s)
        while time.monotonic() < deadline and not all(r.ready() for r in results) and not self._crawling(results):
            time.sleep(0.1)
        waited = time.monotonic() - begun
        endings = [ending(r, 2.0, sent=begun) if r.ready() else Ending("NO RESULT", waited=round(time.monotonic() - begun))
                   for r in results]
        rec = s.recording(expect=[r.id for r in results])
        peaks = child_peaks(rec, s.worker.nodename)
        measured = [e.value for e in endings if e.state == "SUCCESS" and isinstance(e.value, dict)]
        for value in measured:  # the child's own measure as the task ended: a peak between two samples
            pid = value.get("pid")
            if pid is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), float(value.get("rss_mb", 0.0)))
        ran = {}
        for value in measured:
            ran[value.get("pid")] = ran.get(value.get("pid"), 0) + 1
        observed.append(f"{self.tasks} renders of {mb} MiB each; settings: "
                        f"worker_max_tasks_per_child={setting(s.app, 'worker_max_tasks_per_child')}, "
                        f"worker_max_memory_per_child={setting(s.app, 'worker_max_memory_per_child')}")
        observed.append(f"pool children: {len(ran)}; tasks per child: {sorted(ran.values(), reverse=True)}; "
                        f"peak RSS per child (MiB): {sorted(peaks.values(), reverse=True)[:8]}")
        return {"endings": endings, "peaks": peaks, "ran": ran, "mb": mb, "app": s.app, "task": task, "waited": waited,
                "labels": [f"render('page-{tag}-{i}', {mb})" for i in range(1, self.tasks + 1)]}

    def judge(self, seen, observed):
        peaks, ran, app = seen["peaks"], seen["ran"], seen["app"]
        finished = sum(ran.values())
        unfinished = any(end.state == "NO RESULT" for end in seen["endings"])
        each = finished / len(ran) if ran else 0
        # said first: recycling that often also makes the burst too slow to end within the check's wait
        if finished >= 3 and (each < self.fewest_tasks or (unfinished and each < 5)):
            self._too_often(ran, finished, app, seen["waited"])
        limit_kib = setting(app, "worker_max_memory_per_child")
        if limit_kib is not None and not number(limit_kib):
            self._not_a_number(ran, finished, limit_kib, seen["waited"])
        for label, end in zip(seen["labels"], seen["endings"]):
            assert end.state == "SUCCESS", f"{label} {end.describe()}; every render must run and succeed"
        assert peaks, "the recorder sampled no pool child of the check's worker: nothing to judge"
        per_task = setting(app, "worker_max_tasks_per_child")
        worst = max(peaks, key=peaks.get)
        if peaks[worst] > self.bound_mb:
            said = (f"pool child {worst} reached {peaks[worst]:g} MiB of RSS, above the bound of {self.bound_mb} MiB, "
                    f"after {ran.get(worst, 0)} renders in it (its cache grew by {seen['mb']} MiB a task)")
            if not (limit_kib or per_task):
                said += ", and nothing replaced the child"
            if limit_kib and limit_kib > 10_000_000:
                said += (f". worker_max_memory_per_child={limit_kib} is in KiB: {mib(limit_kib)}. Written in bytes? "
                         f"{limit_kib} bytes would be {limit_kib // 1024} KiB, the unit the setting wants")
            elif limit_kib and limit_kib / 1024 > peaks[worst]:
                said += (f". worker_max_memory_per_child={limit_kib} is in KiB: {mib(limit_kib)}, more "
                         "than this child ever held, so it was never replaced")
            elif limit_kib and limit_kib / 1024 > self.bound_mb:
                said += (f". worker_max_memory_per_child={limit_kib} KiB is {limit_kib / 1024:.4g} MiB, above the bound "
                         f"of {self.bound_mb} MiB itself: a child may grow up to it, and past it by the task that "
                         "crosses it (the limit is checked after each task, against the child's peak)")
            elif limit_kib:
                said += (f". worker_max_memory_per_child={limit_kib} KiB ({limit_kib / 1024:.4g} MiB) is checked "
                         "only after a task ends, against the child's peak: set it lower by a task's growth")
            elif per_task:
                said += f". worker_max_tasks_per_child={per_task} lets one child run {per_task} leaky tasks"
            on_task = ignored_task_options(seen["task"])
            if on_task and not (limit_kib or per_task):
                said += (f". {', '.join(on_task)} on the task is not read by anyone: recycling is the worker's, "
                         "set as worker_max_memory_per_child / worker_max_tasks_per_child in the app's settings")
            raise AssertionError(said)

    @staticmethod
    def _crawling(results) -> bool:
        """Whether the renders ended so far make it plain already that children are replaced after (nearly) every
        task: 3 ended, each in a child of its own, or 6 on fewer than 1.5 tasks a child. Then waiting for the rest
        (each replacement can take seconds) only makes the learner wait: _too_often says so either way."""
        pids = [r.result.get("pid") for r in results if r.ready() and isinstance(r.result, dict)]
        return (len(pids) >= 3 and len(set(pids)) == len(pids)) or (len(pids) >= 6 and len(pids) / len(set(pids)) < 1.5)

    def _not_a_number(self, ran: dict, finished: int, limit, waited: float) -> None:
        said = (f"worker_max_memory_per_child={limit!r} is a {type(limit).__name__}, not a number of KiB: "
                "each pool child compares it with its memory after its first task, fails, and exits")
        if ran:
            said += (f" ({len(ran)} pool children ran {finished} of {self.tasks} renders in {waited:.0f} s, at "
                     f"most {max(ran.values())} in one)")
        raise AssertionError(said)

    def _too_often(self, ran: dict, finished: int, app, waited: float) -> None:
        limit_kib = setting(app, "worker_max_memory_per_child")
        per_task = setting(app, "worker_max_tasks_per_child")
        if limit_kib is not None and not number(limit_kib):
            self._not_a_number(ran, finished, limit_kib, waited)
        if finished:
            within = f" of {self.tasks} in {waited:.0f} s" if finished < self.tasks else ""
            said = (f"{len(ran)} pool children ran {finished} renders{within} (at most {max(ran.values())} in one): "
                    "a child was replaced after every task or few, a fork and a wait each time")
            if limit_kib and limit_kib < 10_000:
                said += (f". worker_max_memory_per_child={limit_kib} is in KiB, not MB: {limit_kib / 1024:.2g} MiB, "
                         "below what a fresh child already holds (about 45 MiB), so every child was past it after "
                         "its first task")
            elif limit_kib:
                said += (f". worker_max_memory_per_child={limit_kib} KiB ({limit_kib / 1024:.3g} MiB) leaves a fresh "
                         "child (about 45 MiB) room for hardly a task: the limit is compared with the child's "
                         "peak RSS, its start included")
            elif per_task:
                said += f". worker_max_tasks_per_child={per_task} recycles that often"
            raise AssertionError(said)
        raise AssertionError("no render ran within the check's wait")


# -- 2. results ----------------------------------------------------------------------------------------------------
class Results(Exercise):
    """A burst of `track_click` (nobody reads their results) and a few `build_report` (their caller reads each once,
    at once): no click may leave a result key, and each report's key must expire by itself within an hour (and
    not before a minute: a caller may read late)."""

    id = "08.results"
    module = "ex08_results"
    functions = ("SETTINGS", "track_click", "build_report")
    longest_s = 3600
    shortest_s = 60

    def run(self, s, observed):
        click, report = task_named(s.mod, "track_click"), task_named(s.mod, "build_report")
        rng = random.SystemRandom()
        n, tag = rng.randint(40, 70), rng.randint(100, 999)
        s.consume()
        if not hasattr(s.app.backend, "get_key_for_task"):
            self._no_backend(s, report, observed)
        begun = time.monotonic()
        clicks = [send(click, (f"/page/{tag}/{i}",), s.source) for i in range(n)]
        days = [f"2026-0{rng.randint(1, 9)}-{d:02d}" for d in rng.sample(range(10, 28), 3)]
        reports = [send(report, (day,), s.source) for day in days]
        endings = [ending(r, budget(max(0.1, begun + 8 - time.monotonic())), sent=begun) for r in reports]
        s.recorder.settle(*[c.id for c in clicks], timeout=budget(8))
        runs = s.runs([c.id for c in clicks])
        client = redis.Redis.from_url(str(s.app.conf.broker_url))
        try:
            def key(r):  # the backend names it, namespace prefix included
                return s.app.backend.get_key_for_task(r.id)

            click_ttls = [client.ttl(key(c)) for c in clicks if client.exists(key(c))]
            report_ttls = [client.ttl(key(r)) for r in reports]
        finally:
            client.close()
        observed.append(f"sent {n} track_click and {len(reports)} build_report")
        observed.append(f"result keys left in Redis: {len(click_ttls)} of track_click, "
                        f"{sum(t != -2 for t in report_ttls)} of build_report; report TTLs (s): {report_ttls}")
        return {"clicks": clicks, "ran": runs, "click_ttls": click_ttls, "reports": list(zip(days, endings)),
                "report_ttls": report_ttls, "app": s.app, "report": report, "click": click}

    def _no_backend(self, s, report, observed) -> None:
        """The learner's app has no result backend at all: run the reports anyway, and say what their callers got."""
        reports = [send(report, (f"2026-01-{d}",), s.source) for d in (11, 12)]
        ran = s.runs([r.id for r in reports])
        try:
            reports[0].get(timeout=1)
            got = "a result"
        except Exception as exc:  # what the caller meets: Celery refuses, since it has nowhere to look
            got = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        observed.append(f"result_backend={s.app.conf.result_backend!r}; backend {type(s.app.backend).__name__}")
        raise AssertionError(f"build_report ran ({sum(bool(v) for v in ran.values())} of {len(reports)}) but its app "
                             f"has no result backend (result_backend={s.app.conf.result_backend!r}), so no task's "
                             f"result is stored and its caller's .get() meets {got}. Keep the backend; skip storing "
                             "per task (ignore_result)")

    def judge(self, seen, observed):
        app, report = seen["app"], seen["report"]
        for (day, end), ttl in zip(seen["reports"], seen["report_ttls"]):
            if end.state == "NO RESULT" or (end.state != "SUCCESS" and ttl == -2):
                why = ("task_ignore_result=True stores no task's result" if app.conf.task_ignore_result
                       else "ignore_result=True on build_report" if report.ignore_result
                       else "no key celery-task-meta-<id> was written")
                raise AssertionError(f"build_report({day!r}) stored no result ({why}): its caller's .get() gets "
                                     "nothing. Ignore the results nobody reads, not the ones a caller waits for")
            assert end.state == "SUCCESS", f"build_report({day!r}) {end.describe()}"
        not_run = [c for c in seen["clicks"] if not seen["ran"].get(c.id)]
        if not_run and seen["click"].expires is not None:
            raise AssertionError(
                f"{len(not_run)} of {len(seen['clicks'])} track_click never ran on the worker: expires="
                f"{seen['click'].expires!r} on the task drops a message that waited longer than that in the queue. It "
                "is not how long a result is kept (result_expires), and it stores the result all the same")
        assert not not_run, f"{len(not_run)} of {len(seen['clicks'])} track_click never ran on the worker"
        left = seen["click_ttls"]
        if left:
            ttl = max(left)
            said = (f"{len(left)} of {len(seen['clicks'])} track_click results sat in Redis after the burst, keys "
                    f"celery-task-meta-<id>, each for {ttl} s more: nobody reads them. Tell the task not to store "
                    "them (ignore_result)")
            if seen["click"].expires is not None:
                said += (f". expires={seen['click'].expires!r} on the task is about the message (dropped if it waits "
                         "that long), not the result")
            raise AssertionError(said)
        ttls = seen["report_ttls"]
        assert all(t != -1 for t in ttls), (
            f"build_report's result keys have no TTL ({ttls}): they never expire. result_expires="
            f"{app.conf.result_expires!r}: 0 or None means keep for ever")
        assert all(t <= self.longest_s for t in ttls), (
            f"build_report's results expire in {max(ttls)} s (result_expires={app.conf.result_expires!r}); keep them at "
            f"most an hour ({self.longest_s} s)")
        assert all(t >= self.shortest_s for t in ttls), (
            f"build_report's results had {max(min(ttls), 0)} s left when the check looked, right after the burst "
            f"(result_expires={app.conf.result_expires!r}): a caller who reads a minute late finds nothing; keep "
            f"them at least {self.shortest_s} s")


# -- 3. oom --------------------------------------------------------------------------------------------------------
class SurviveOOM(Exercise):
    """Batches on a `-c 1` worker whose pool child is capped (`MemoryCap`); one batch outgrows the cap and its
    child is SIGKILLed mid-task. Every batch must still end SUCCESS and be in the ledger."""

    id = "08.oom"
    module = "ex08_oom"
    functions = ("SETTINGS",)
    ledger = "ex08_oom"
    cap_mb = 40
    big_mb = 72

    def run(self, s, observed):
        task = task_named(s.mod, "import_batch")
        rng = random.SystemRandom()
        n, tag = rng.randint(4, 6), rng.randint(100, 999)
        victim = rng.randint(0, n - 2)  # never last: batches behind it show whether the worker went on
        ledger = Ledger(self.ledger)
        ledger.clear()
        s.consume()
        kids = s.worker.children
        if not kids:
            raise Uncheckable("the check's worker had no pool child to cap", fix="check again")
        batches = [f"batch-{tag}-{i}" for i in range(n)]
        # follow: a child the worker forks to replace one it recycled is capped too, so that recycling (a fix for
        # leaks, not for a task killed midway) meets the same kill as any other answer
        with MemoryCap(kids, mb=self.cap_mb, follow=lambda: s.worker.children) as cap:
            begun = time.monotonic()
            results = [send(task, (b, self.big_mb if i == victim else 8), s.source) for i, b in enumerate(batches)]
            kill = cap.wait_for_kill(budget(KILL_WAIT_S))  # a loaded machine forks replacement children slowly
            endings = [ending(r, budget(max(0.1, begun + KILL_WAIT_S + 4 - time.monotonic())), sent=begun)
                       for r in results]
        if kill is None:
            raise Uncheckable(f"the memory cap ({cap.kind}) killed no child within {KILL_WAIT_S:g} s; nothing was judged",
                              fix="check again; the machine may be very busy")
        tally = ledger.tally(batches)
        ledger.clear()
        observed.append(f"the cap: {cap.how}")
        observed.append(f"{batches[victim]} (needs {self.big_mb} MiB) killed by {kill.by} at {kill.rss_mb:g} MiB, "
                        f"pid {kill.pid}")
        observed.append("states: " + ", ".join(f"{b} {e.state}" for b, e in zip(batches, endings)))
        observed.append(f"ledger: {tally['done']} of {n} batches done, lost {tally['lost']}")
        return {"batches": batches, "endings": endings, "victim": victim, "tally": tally, "kill": kill,
                "results": results, "app": s.app, "task": task}

    def judge(self, seen, observed):
        app, victim = seen["app"], seen["batches"][seen["victim"]]
        task = seen["task"]
        late = bool(task.acks_late)  # the app's task_acks_late, unless the task says otherwise
        reject = bool(task.reject_on_worker_lost if task.reject_on_worker_lost is not None
                      else app.conf.task_reject_on_worker_lost)
        retry = bool(app.conf.get("task_retry_on_worker_lost"))
        acks_on_failure = app.conf.get("task_acks_on_failure")
        if acks_on_failure is None:
            acks_on_failure = app.conf.get("task_acks_on_failure_or_timeout", True)
        for batch, end, result in zip(seen["batches"], seen["endings"], seen["results"]):
            if end.state == "FAILURE" and end.error == "WorkerLostError":
                if not late and not retry:
                    why = ("its message had been acknowledged when the worker took it (early ack, the default), so "
                           "there was nothing to deliver again: acknowledge late (task_acks_late)")
                    if reject:
                        why += "; task_reject_on_worker_lost does nothing without it"
                elif late and not reject and not acks_on_failure:
                    why = ("with task_acks_late and acks on failure turned off, Celery rejects the failed message "
                           "WITHOUT requeueing it (requeue is what task_reject_on_worker_lost asks for): it is dropped "
                           "all the same")
                elif late and not reject:
                    why = ("with task_acks_late alone Celery still acknowledges a task that failed, and a lost worker "
                           "is a failure (task_acks_on_failure, which falls back to task_acks_on_failure_or_timeout, "
                           "True by default): the message is gone. Say that a lost worker means 'deliver again' "
                           "(task_reject_on_worker_lost)")
                elif retry and task.max_retries is not None and task.max_retries < 1:
                    why = (f"task_retry_on_worker_lost retries at most max_retries times, and import_batch has "
                           f"max_retries={task.max_retries}: no retry was left")
                else:
                    why = "the message was not delivered again"
                if getattr(task, "autoretry_for", None):
                    why += (". autoretry_for catches exceptions raised inside the task; a child killed by signal 9 "
                            "raises nothing in it, the worker's main process sees it die")
                recycled = [f"{name}={setting(app, name)}" for name in
                            ("worker_max_memory_per_child", "worker_max_tasks_per_child") if setting(app, name)]
                if recycled:
                    why += (f". {', '.join(recycled)} recycles a child between tasks, which bounds a slow leak; it "
                            "cannot save the task running when the kill comes")
                raise AssertionError(f"{batch} {end.describe()}: its child was killed by signal 9 ({seen['kill'].by}) "
                                     f"and the batch ended FAILURE, never re-run; {why}")
            if end.state == "NO RESULT":
                state = result.state
                if state == "RETRY":
                    delay = seen["task"].default_retry_delay
                    raise AssertionError(f"{batch} was lost with its child and is set to RETRY, but the retry waits "
                                         f"default_retry_delay ({delay} s) and had not come after {end.waited:g} s: "
                                         "make it come within a second or two")
                raise AssertionError(f"{batch} had no result after {end.waited:g} s (state {state}): it was neither "
                                     "re-run nor failed")
            assert end.state == "SUCCESS", f"{batch} {end.describe()}"
        lost = seen["tally"]["lost"]
        assert not lost, f"{', '.join(lost)} ended SUCCESS but wrote nothing to the ledger: keep the body load_batch(...)"


recycle = Recycle()
results = Results()
oom = SurviveOOM()
