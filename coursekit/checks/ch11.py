"""Chapter 11 exercises: beat, judged from what real beats sent and what the check's worker did with it.

11.expires runs a beat on the learner's module while the check's worker reads nothing, for a few seconds of the
check's choosing, then lets the worker read: every message that waited longer than a second must be dropped, and
the ones sent after must run. 11.once runs TWO beats on one schedule the check writes (an entry name of its own, every
second) on a two-process worker and counts, per schedule slot, how many copies did their work (the ledger): exactly
one; then it sends two copies of one second apart, the second after the first finished: again exactly one. 11.crontab runs
nothing: it computes the learner's crontab's next runs, in the learner's app's time zone, from instants the check
draws, and compares them with the schedule the exercise asks for.
"""
from __future__ import annotations

import copy
import random
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from celery.schedules import crontab, maybe_schedule, schedule

from .. import namespace, queues
from ..beat import Beat
from ..budget import budget
from ..checking import FILE_ENV, HOST, NAME_ENV
from ..errors import WorkerError
from ..exercise import Exercise
from ..labs.periodic import next_runs
from ..ledger import Ledger, client
from ..outcomes import Incorrect, Uncheckable
from ..trials import task_named


def entries_for(app, task) -> dict:
    """The learner's beat_schedule entries that send `task`."""
    found = app.conf.beat_schedule or {}
    if not isinstance(found, dict):
        raise Incorrect(f"beat_schedule is a {type(found).__name__}; it must be a dict of entries, "
                        "{'name': {'task': ..., 'schedule': ...}}")
    return {name: e for name, e in found.items() if isinstance(e, dict) and e.get("task") == task.name}


def hosted_beat(s, name: str, config: dict | None = None) -> Beat:
    """A real beat on the learner's module, loaded as the check's worker loads it."""
    beat = Beat(HOST, name=name, cwd=s.path.parent.parent, config=config,
                env={FILE_ENV: str(s.path), NAME_ENV: s.name}, started_by=f"the check of exercise {s.exercise.id}")
    beat.app = s.app
    return beat


def beat_failed(beat: Beat, exc: WorkerError) -> Incorrect:
    """Why a beat on the learner's module sent nothing: its log's last error line, said plainly."""
    lines = [x for x in beat.logs(stream="stderr").splitlines() if "Error" in x or "error" in x]
    said = lines[-1].split("] ", 1)[-1] if lines else exc.problem
    return Incorrect(f"beat could not run your schedule: {said[:300]}",
                     fix="each entry takes task, schedule, args, kwargs, options and relative; apply_async's options "
                         "(expires, queue...) go inside 'options'")


def sends(rec, task_name: str, beats: dict[int, str]) -> list[dict]:
    """Every message of `task_name` a beat sent, in order: `id`, `at` (Unix time), `beat`."""
    ev = rec.events_df
    sent = ev[(ev.type == "task-sent") & (ev.name == task_name)]
    return [{"id": r.task_id, "at": rec.started_at + r.t, "beat": beats.get(int(r.pid), f"pid {r.pid}")}
            for r in sent.itertuples()]


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-4]


# -- 1. expires ----------------------------------------------------------------------------------------------------
class Expires(Exercise):
    """A beat sends `refresh` every second while the check's worker reads nothing for `away` s (drawn by the
    check); then it reads. No message that waited more than a second may run; those sent once it reads must run."""

    id = "11.expires"
    module = "ex11_expires"
    functions = ("SCHEDULE",)
    ledger = "ex11_expires"
    every_s = 1.0
    stale_s = 1.2
    """A message sent this long before the worker began to read had waited past its second when it was taken."""
    after_s = 3.0
    """How long the check watches once the worker reads."""
    lead_s = 0.05
    """The youngest stale message has waited `stale_s` + this when the worker begins to read."""

    def run(self, s, observed):
        task = task_named(s.mod, "refresh", bound=False)
        found = entries_for(s.app, task)
        if not found:
            raise Incorrect(f"no entry of beat_schedule sends refresh (task {task.name!r}): beat would never send it",
                            fix="add one: {'task': refresh.name, 'schedule': ..., 'args': [...], 'options': {...}}")
        name, entry = next(iter(found.items()))
        try:
            every = maybe_schedule(entry.get("schedule"), entry.get("relative", False), app=s.app)
        except Exception as exc:
            raise Incorrect(f"entry {name!r}: its schedule {entry.get('schedule')!r} is not one beat can use "
                            f"({type(exc).__name__})") from None
        if not isinstance(every, schedule) or isinstance(every, crontab) or \
                every.run_every.total_seconds() > self.every_s * 1.3:
            raise Incorrect(f"entry {name!r} sends refresh on {every!r}, not every second: stale runs need a backlog "
                            "of runs a second apart to be stale at all", fix="'schedule': 1.0 (seconds, or a timedelta)")
        ledger = Ledger(self.ledger)
        ledger.clear()
        away = random.SystemRandom().uniform(2.5, 3.2)
        beat = hosted_beat(s, "check-beat")
        try:
            try:
                beat.start(timeout=budget(12))
            except WorkerError as exc:
                raise beat_failed(beat, exc) from None
            time.sleep(budget(away))
            self.align(beat, every.run_every.total_seconds())
            reading = time.time()
            s.consume()
            time.sleep(budget(self.after_s))
            beat.stop()
            deadline = time.monotonic() + budget(4)
            while queues.depth(s.app) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            beat.kill()
        rec = s.recording()
        sent = sends(rec, task.name, {beat.pid: "beat"})
        ev = rec.events_df
        dropped = set(ev[(ev.type == "task-revoked")].task_id)
        ran = {e.get("task_id") for e in ledger.entries()}
        ledger.clear()
        for m in sent:
            m["fate"] = "ran" if m["id"] in ran else "dropped" if m["id"] in dropped else "neither"
        observed.append(f"entry {name!r}: {entry.get('schedule')!r}, options {entry.get('options', {})!r}; "
                        f"refresh.expires={task.expires!r}")
        observed.append(f"the worker read nothing for {reading - sent[0]['at'] if sent else away:.1f} s after beat's "
                        f"first send; beat sent {len(sent)}: " +
                        ", ".join(f"{clock(m['at'])} {m['fate']}" for m in sent))
        errors = [x.split("] ", 1)[-1] for x in beat.logs(stream="stderr").splitlines() if "ERROR/" in x]
        return {"sent": sent, "reading": reading, "task": task, "entry": entry, "name": name, "errors": errors}

    def align(self, beat: Beat, period: float) -> None:
        """Wait until `lead_s` after one of beat's sends: then the youngest message that counts as stale has waited
        just over `stale_s` when the worker begins to read, so an expiry of 2 s lets it run, every time."""
        sends = beat.sends()
        if not sends:
            return
        target = sends[-1]["at"].timestamp() + self.stale_s + self.lead_s - period
        while target < time.time():
            target += period
        time.sleep(target - time.time())

    def judge(self, seen, observed):
        sent, reading = seen["sent"], seen["reading"]
        if len(sent) < 4 and seen["errors"]:
            raise AssertionError(f"beat tried to send refresh, but the send failed: {seen['errors'][-1][:300]}")
        assert len(sent) >= 4, f"beat sent refresh only {len(sent)} times in the check's time"
        stale = [m for m in sent if m["at"] < reading - self.stale_s]
        fresh = [m for m in sent if m["at"] > reading + 0.3]
        ran_stale = [m for m in stale if m["fate"] == "ran"]
        options = seen["entry"].get("options") or {}
        if ran_stale:
            worst = reading - ran_stale[0]["at"]
            why = ("nothing tells the worker that a refresh is stale: give the entry an expiry"
                   if options.get("expires") is None and seen["task"].expires is None else
                   f"expires={options.get('expires', seen['task'].expires)!r} lets a message live longer than the "
                   "second it is worth")
            raise AssertionError(f"{len(ran_stale)} of the {len(stale)} refreshes sent while no worker read the "
                                 f"queue still ran once it did, the oldest after waiting {worst:.1f} s or more: {why}")
        assert stale, "no message waited in the queue during the check: nothing was judged"
        lost = [m for m in fresh if m["fate"] != "ran"]
        assert len(fresh) >= 2, f"beat sent only {len(fresh)} refreshes once the worker read: too few to judge"
        assert not lost, (f"{len(lost)} of the {len(fresh)} refreshes sent while the worker was reading did not run "
                          f"({', '.join(m['fate'] for m in lost)}): an expiry of "
                          f"{options.get('expires', seen['task'].expires)!r} s drops even the fresh ones; a second "
                          "is the bound")


# -- 2. once -------------------------------------------------------------------------------------------------------
class Once(Exercise):
    """Two beats send `digest(entry)` every second (`relative`: on the whole second), the second one started a
    moment after the first; each slot (second) both beats sent must do the work exactly once (ledger `ex11_once`).
    The worker has two processes and a Redis a network away (each command of the task waits `slow_redis_s`), so the
    two copies of a slot run side by side and overlap by whole commands: a lock taken in two steps races. Then the
    check sends copies apart itself: a second copy once the first has finished, in the same second; it too must
    find the slot taken (a lock released when the work is done lets it through)."""

    id = "11.once"
    module = "ex11_once"
    functions = ("digest",)
    ledger = "ex11_once"
    watch_s = 3.5
    concurrency = 2
    slow_redis_s = 0.05
    apart_pairs = 2

    def run(self, s, observed):
        task = task_named(s.mod, "digest", bound=True)
        rng = random.SystemRandom()
        entry = f"digest-{rng.randint(100, 999)}"
        config = {"beat_schedule": {entry: {"task": task.name, "schedule": 1.0, "args": [entry], "relative": True}}}
        ledger = Ledger(self.ledger)
        ledger.clear()
        redis = client(str(s.app.conf.broker_url))
        for key in redis.scan_iter(f"{namespace.prefix()}lock:*"):  # locks of earlier checks (one without a TTL)
            redis.delete(key)
        s.consume()
        one, two = hosted_beat(s, "beat-1", config), hosted_beat(s, "beat-2", config)
        try:
            try:
                one.start(timeout=budget(12))
                time.sleep(rng.uniform(0.1, 0.4))
                two.start(timeout=budget(12))
            except WorkerError as exc:
                raise beat_failed(one if not one.running else two, exc) from None
            time.sleep(budget(self.watch_s))
            one.stop(), two.stop()
            deadline = time.monotonic() + budget(4)
            while queues.depth(s.app) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.4)
        finally:
            one.kill(), two.kill()
        later = f"digest-{rng.randint(1000, 9999)}"
        apart = [self.send_apart(s, task, later, ledger) for _ in range(self.apart_pairs)]
        rec = s.recording()
        sent = sends(rec, task.name, {one.pid: "beat-1", two.pid: "beat-2"})
        everything = ledger.entries()
        worked = [e for e in everything if e.get("key") == entry]
        ledger.clear()
        did_later = {e.get("task_id") for e in everything if e.get("key") == later}
        ev = rec.events_df
        began = ev[ev.type == "task-started"].groupby("task_id").t.min()
        for pair in apart:
            at = [began.get(i) for i in (pair["first"], pair["second"])]
            pair["judged"] = pair["second"] is not None and None not in at and \
                int(rec.started_at + at[0]) == int(rec.started_at + at[1])
            pair["work"] = [i in did_later for i in (pair["first"], pair["second"])]

        slots: dict[int, dict] = {}
        for m in sent:
            slot = slots.setdefault(int(m["at"]), {"ids": set(), "beats": set()})
            slot["ids"].add(m["id"])
            slot["beats"].add(m["beat"])
        did = {e.get("task_id") for e in worked}
        paired = {k: sum(i in did for i in v["ids"]) for k, v in sorted(slots.items()) if len(v["beats"]) == 2}
        untracked = [e for e in worked if e.get("task_id") not in {m["id"] for m in sent}]
        observed.append(f"two beats sent {len(sent)} digest({entry!r}); seconds both sent: {len(paired)}; "
                        f"work done in each: {list(paired.values())}")
        said = {(True, False): "the first did the work, the second nothing", (True, True): "both did the work",
                (False, False): "neither did the work", (False, True): "only the second did the work"}
        observed.append(f"then the check sent digest({later!r}) twice in one second, the second copy once the first "
                        "had finished: " + "; ".join(said[tuple(p["work"])] if p["judged"] else "not in one second"
                                                      for p in apart))
        return {"paired": paired, "entry": entry, "worked": worked, "untracked": untracked, "sent": sent,
                "apart": apart}

    @staticmethod
    def send_apart(s, task, name: str, ledger: Ledger) -> dict:
        """Send `digest(name)` just after a whole second; once that copy has finished (its result stored, or at
        most 0.6 s), a second copy, which then normally runs in the same second."""
        time.sleep(1.02 - time.time() % 1)
        first = task.apply_async(args=[name])
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline and not s._has_result(first.id):
            time.sleep(0.01)
        if not s._has_result(first.id):
            return {"first": first.id, "second": None}
        second = task.apply_async(args=[name])
        deadline = time.monotonic() + budget(2)
        while time.monotonic() < deadline and not s._has_result(second.id):
            time.sleep(0.02)
        return {"first": first.id, "second": second.id}

    def judge(self, seen, observed):
        paired = seen["paired"]
        if not paired:
            raise Uncheckable("the two beats never sent on the same second during the check: nothing was judged",
                              fix="check again; the machine may be very busy")
        twice = [k for k, n in paired.items() if n > 1]
        if twice:
            raise AssertionError(f"on {len(twice)} of the {len(paired)} seconds both beats sent, both copies did the "
                                 f"work (first at {clock(twice[0])[:8]}): the second copy must find the slot taken. "
                                 "Take a lock that is still held when the other copy runs, with one atomic command "
                                 "(SET NX), and do not release it when the work is done")
        never = [k for k, n in paired.items() if n == 0]
        if never:
            raise AssertionError(f"on {len(never)} of the {len(paired)} seconds both beats sent, no copy did the work "
                                 f"(first at {clock(never[0])[:8]}): a lock must free the next slot, by a key per slot "
                                 "or a TTL shorter than the period (1 s); a lock with no TTL never frees it")
        assert len(paired) >= 3, f"only {len(paired)} seconds had a copy from both beats: too few to judge"
        judged = [p for p in seen["apart"] if p["judged"]]
        if any(p["work"] == [True, True] for p in judged):
            raise AssertionError("copies of one second that arrive together did the work once; but when the second "
                                 "copy came after the first had finished, still in the same second, both copies did "
                                 "the work: the lock was gone by then. Keep it until its TTL ends (do not delete it "
                                 "when the work is done)")
        if any(not p["work"][0] for p in judged):
            raise AssertionError("a copy sent alone, on a second no other copy had taken, did no work: the lock must "
                                 "free the next slot, by a key per slot or a TTL shorter than the period (1 s)")
        if not judged:
            raise Uncheckable("the check's copies sent apart never ran in the same second: nothing was judged",
                              fix="check again; the machine may be very busy")


# -- 3. crontab ----------------------------------------------------------------------------------------------------
TOKYO = ZoneInfo("Asia/Tokyo")


def wanted_runs(after: datetime, n: int) -> list[datetime]:
    """07:30 and 19:30 in Tokyo, Monday to Friday: the next `n` after `after`, in UTC, computed without Celery."""
    out, day = [], after.astimezone(TOKYO).date()
    while len(out) < n:
        if day.weekday() < 5:
            for hour in (7, 19):
                at = datetime(day.year, day.month, day.day, hour, 30, tzinfo=TOKYO)
                if at > after and len(out) < n:
                    out.append(at.astimezone(timezone.utc))
        day += timedelta(days=1)
    return out


def in_tokyo(at: datetime) -> str:
    return f"{at.astimezone(TOKYO):%a %Y-%m-%d %H:%M} Tokyo ({at.astimezone(timezone.utc):%a %H:%M} UTC)"


class Crontab(Exercise):
    """The report must run at 07:30 and 19:30 Tokyo time, Monday to Friday. Nothing runs: the check computes the
    next runs of the learner's entry, as beat would (Celery's crontab in the app's time zone), from instants it
    draws, and compares them with the wanted ones."""

    id = "11.crontab"
    module = "ex11_crontab"
    functions = ("SETTINGS", "SCHEDULE")
    fleet = True  # no worker: nothing is sent
    runs = 5

    def run(self, s, observed):
        task = task_named(s.mod, "report")
        found = entries_for(s.app, task)
        if not found:
            raise Incorrect(f"no entry of beat_schedule sends report (task {task.name!r})",
                            fix="keep the line app.conf.beat_schedule = {'report': {'task': report.name, "
                                "'schedule': SCHEDULE}}")
        name, entry = next(iter(found.items()))
        given = entry.get("schedule")
        if not isinstance(given, crontab):
            raise Incorrect(f"entry {name!r} has the schedule {given!r}, an interval counted from the last run: it "
                            "drifts with every restart and knows no weekdays; a clock time needs a crontab")
        if not s.app.conf.timezone and not s.app.conf.enable_utc:
            raise Incorrect("your app sets enable_utc=False and no timezone: its crontabs follow the local time of "
                            "whatever machine beat runs on, 07:30 in Tokyo only on a machine set to Tokyo",
                            fix="name the zone: timezone='Asia/Tokyo'")
        cron = copy.copy(given)
        cron.app = s.app  # as beat binds it: the app's timezone and enable_utc decide the hours
        rng = random.SystemRandom()
        base = datetime(2026, 1, 1, tzinfo=timezone.utc)
        instants = [base + timedelta(minutes=rng.randint(0, 3 * 365 * 24 * 60)) for _ in range(3)]
        saturday = base + timedelta(days=rng.randint(0, 150) * 7 + 2, hours=rng.randint(0, 23))  # 2026-01-03: Sat
        instants.append(saturday.replace(minute=rng.randint(0, 59)))
        results = []
        for after in instants:
            try:
                got = next_runs(cron, after, self.runs)
            except Exception as exc:
                raise Incorrect(f"Celery could not compute the next run of {given!r} in your app's time zone "
                                f"({s.app.conf.timezone!r}): {type(exc).__name__}: {exc}") from None
            results.append((after, got, wanted_runs(after, self.runs)))
        observed.append(f"schedule {given!r}; app timezone={s.app.conf.timezone!r}, enable_utc={s.app.conf.enable_utc}")
        return {"results": results, "cron": given, "app": s.app}

    def judge(self, seen, observed):
        for after, got, wanted in seen["results"]:
            for i, (g, w) in enumerate(zip(got, wanted)):
                if abs((g - w).total_seconds()) >= 60:
                    zone = seen["app"].conf.timezone
                    note = ("" if zone else f"; your app has no timezone, so the hours are read in "
                            f"{'UTC' if seen['app'].conf.enable_utc else 'the machine local time'}")
                    raise AssertionError(f"after {in_tokyo(after)}, run {i + 1} of your schedule would be "
                                         f"{in_tokyo(g)}, but the report is wanted at {in_tokyo(w)}{note}")


expires = Expires()
once = Once()
cron = Crontab()
