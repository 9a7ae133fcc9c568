"""Chapter 13 exercises: Celery inside an application, judged on what the workers did to the application's data.

13.commit places orders through the learner's place_order while each commit draws, at the commit, how long it is
held (up to 1.45 s) or that it is refused (rolled back): every read the invoice task makes must find its row, after
the commit and soon after it; the refused order must send no task; one order is changed by the check after
place_order returned and before the worker could run its task, and its invoice must carry the changed total.
13.deploy queues messages of the OLD notify(user_id) and of the learner's new code before the worker (on the new code)
reads them, and one old message after: each must be delivered once, by the right channel, with no second message
for the user still to run at the end. 13.ratelimit sets the partner's quota (hidden) and runs two workers of three
threads each, as on two hosts: the partner's view of the calls (a ledger of their times) must hold no more than the
quota in any second, and not crawl far below it. 13.revoke queues posts while the worker reads another queue, has
the learner's cancel() cancel one, restarts the worker on the posts' queue, and expects the cancelled post to reach
the worker and never be published, the others to be, and the state file to be the same one a day later.
"""
from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery.result import AsyncResult

from ..budget import budget
from ..calls import call, send
from ..checking import HOSTNAME_ENV, SLOW_REDIS_ENV, STATE_REPORT_ENV
from ..evidence import call_repr, ending
from ..exercise import Exercise
from ..fleet import Fleet, FleetWorker
from ..labs import ex13_notify, ex13_partner, ex13_posts
from ..outcomes import Incorrect, Uncheckable
from ..trials import task_named
from ..worker import stop_all
from ..workerlines import parse_line


def _shop():
    """coursekit.labs.ex13_shop as the learner's module imports it now. Its commits and holds live in the module: a
    test that drops coursekit.labs.* from sys.modules (test_team moves between brokers) leaves a module imported
    earlier beside the one the learner's code gets, and CI saw the check read the stale one ("committed no order")."""
    return importlib.import_module("coursekit.labs.ex13_shop")


def settle(until, bound: float, step: float = 0.05) -> bool:
    """Wait until `until()` is true, at most `bound` s (within the check's time); whether it became true."""
    deadline = time.monotonic() + budget(bound)
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(step)
    return until()


def sent_for(s, task_name: str) -> list:
    """The messages of `task_name` published in this process since the check began."""
    return [m for m in s.sent if m.task == task_name]


# -- 1. commit ----------------------------------------------------------------------------------------------------
LATE_S = 1.0
"""A task sent on commit reads the order well within this long of the commit, even on a loaded machine (0.2 s at
most on a machine loaded 6 times over); a task that read later waited on purpose (a sleep, a countdown). With
commits held from 0.05 to 1.45 s, no fixed wait is both longer than the longest hold and within this of the
shortest."""


class Commit(Exercise):
    """Orders placed while the check holds each transaction open for a drawn time: no read before its commit, each
    read soon after it, and the invoice of an order changed after sending carries the change."""

    id = "13.commit"
    module = "ex13_commit"
    functions = ("send_invoice", "place_order")
    concurrency = 4  # each order's task runs at once, whatever the others do (a sleeping one, say)

    def run(self, s, observed):
        task = task_named(s.mod, "send_invoice")
        _shop().reset()
        try:
            return self._orders(s, observed, task)
        finally:
            _shop().hold_commits()
            _shop().drop()  # nothing of the check's is left in the temporary folder

    def _orders(self, s, observed, task):
        rng = random.SystemRandom()
        ids = rng.sample(range(1000, 9999), 5)
        edited, later = ids[0], ids[1:]
        totals = {order: rng.randint(10, 400) for order in ids}
        changed_to = totals[edited] + rng.randint(5, 90)
        holds = [round(rng.uniform(0.05, 0.15), 2), round(rng.uniform(0.35, 0.6), 2), round(rng.uniform(1.25, 1.45), 2)]
        placed = {}
        try:
            # the worker reads nothing yet: this order's task waits in the queue while the customer edits the order
            _shop().hold_commits((0.05, True))
            placed[edited] = self._place(s, edited, totals[edited])
            _shop().edit_order(edited, changed_to)
            s.consume()
            # each commit draws its fate at the commit: held a short, middling or long time, or refused (rolled back)
            _shop().hold_commits(*[(hold, True) for hold in holds], (round(rng.uniform(0.2, 0.4), 2), False))
            for order in later:
                placed[order] = self._place(s, order, totals[order])
        finally:
            _shop().hold_commits()
        fates = dict(_shop().held)
        failed = sorted(_shop().rolled_back)  # the one whose commit was refused
        kept = [order for order in ids[1:] if order not in failed]

        def done() -> bool:  # every order invoiced, or its every task over (a failure is not retried later)
            billed = {e["key"] for e in _shop().invoices().entries()}
            return all(order in billed or all(AsyncResult(m.id, app=s.app).ready() for m in sent_for(s, task.name)
                                              if order in _mentions(m)) for order in [edited] + kept)

        settle(done, 3 * LATE_S)  # returns as soon as every order is done; a loaded machine may need it all
        time.sleep(0.2)  # a retry or a second invoice would come now, and a task sent for the refused order
        messages = {order: [m for m in sent_for(s, task.name) if order in _mentions(m)] for order in ids}
        endings = {m.id: ending(AsyncResult(m.id, app=s.app), budget(0.2 if order in failed else 0.5))
                   for order, ms in messages.items() for m in ms}
        reads = _shop().reads().entries()
        invoices = _shop().invoices().entries()
        commits = dict(_shop().commits)
        stored = {order: _shop().in_database(order) for order in failed}
        for order in ids:
            mine = [r for r in reads if r["key"] == order]
            at = commits.get(order) or _shop().rolled_back.get(order)
            hold = "changed after sending" if order == edited else (
                f"commit held {fates.get(order, 0)} s" + (", then REFUSED: rolled back" if order in failed else ""))
            when = ", ".join(f"{r['at'] - at:+.2f} s {'found' if r['found'] else 'MISSING'}" for r in mine[:3]) \
                + (f" ... {len(mine)} in all, the last {mine[-1]['at'] - at:+.2f} s" if len(mine) > 3 else "") \
                if at else "no commit"
            observed.append(f"order {order} ({hold}): {len(messages[order])} message(s); reads (from the "
                            f"{'rollback' if order in failed else 'commit'}) {when or 'none'}; invoices "
                            f"{[e['total'] for e in invoices if e['key'] == order]}")
        return {"ids": ids, "edited": edited, "totals": totals, "changed_to": changed_to, "placed": placed,
                "messages": messages, "endings": endings, "reads": reads, "invoices": invoices, "commits": commits,
                "holds": {order: fates.get(order, 0.0) for order in kept}, "failed": failed, "stored": stored,
                "rolled_back": dict(_shop().rolled_back)}

    def _place(self, s, order: int, total: int):
        label = f"place_order({order}, {total})"

        def placing():  # a refused commit leaves the `with` block as CommitFailed: the request fails, as it should
            try:
                return s.mod.place_order(order, total)
            except _shop().CommitFailed as exc:
                return exc

        return call(placing, name=label, source=s.source, timeout=6.0)

    def judge(self, seen, observed):
        ids, commits, reads, invoices = seen["ids"], seen["commits"], seen["reads"], seen["invoices"]
        for order in ids:
            label = f"place_order({order}, {seen['totals'][order]})"
            assert order in commits or order in seen["failed"], (
                f"{label} committed no order through transaction(): save it with tx.insert_order(...) inside "
                "`with transaction() as tx:`")
            if order not in seen["failed"]:
                assert seen["messages"][order], f"{label} sent no send_invoice task for the order"
        for order in seen["holds"]:  # the orders whose commit the check held back
            mine = [r for r in reads if r["key"] == order]
            early = [r for r in mine if not r["found"]]
            if early:
                said = (f"send_invoice read order {order} {commits[order] - early[0]['at']:.2f} s before "
                        f"place_order's transaction committed (the check held that commit {seen['holds'][order]} s) "
                        "and found no row")
                if len(mine) > 1:
                    said += (f"; it read {len(mine)} times in all, retrying until the row was there: a retry only "
                             "hides the race, and a commit held longer (or rolled back) outruns it")
                raise AssertionError(said + ": the task was sent before the data it needs was committed. Send it "
                                     "after the commit: tx.on_commit(...), or after the `with` block")
        for order in ids:  # a row is visible to others only once its transaction commits
            early = [r for r in reads if r["key"] == order and r["found"] and order in commits
                     and r["at"] < commits[order]]
            if early:
                raise AssertionError(
                    f"send_invoice found order {order} {commits[order] - early[0]['at']:.2f} s before place_order's "
                    "transaction ended: the row was committed early (a commit of your own inside the `with` block?), "
                    "so the rest of the request could no longer roll it back. Let transaction() commit, and send the "
                    "task after that: tx.on_commit(...)")
        for order in seen["failed"]:
            label = f"place_order({order}, {seen['totals'][order]})"
            if seen["stored"].get(order):
                raise AssertionError(f"order {order} is in the database though the check refused its commit (rolled "
                                     "back): it was committed early, inside the `with` block. Let transaction() "
                                     "commit, and send the task after that: tx.on_commit(...)")
        placed = [order for order in ids if order not in seen["failed"]]
        for order in placed:
            mine = [r for r in reads if r["key"] == order]
            billed = [e for e in invoices if e["key"] == order]
            if not mine and billed:
                raise AssertionError(f"order {order} was invoiced ({billed[0]['total']}) but never read: the task "
                                     "worked from the data in its message. Pass the order id and read the order in "
                                     "the task (read_order(order_id))")
            if not mine:
                ends = [seen["endings"][m.id] for m in seen["messages"][order]]
                raise AssertionError(f"send_invoice never read order {order} (its task "
                                     f"{ends[0].describe() if ends else 'never ran'}): call read_order(order_id) "
                                     "in the task")
        edited = seen["edited"]
        billed = [e["total"] for e in invoices if e["key"] == edited]
        carried = [m for m in seen["messages"][edited] if any(isinstance(a, (dict, list, tuple)) for a in m.args)]
        if billed and billed[0] != seen["changed_to"]:
            said = (f"order {edited} was invoiced for {billed[0]}, its total when the task was sent; the customer "
                    f"changed it to {seen['changed_to']} before the worker ran the task")
            if carried:
                said += f" (the message carried {str(carried[0].args)[:80]})"
            raise AssertionError(said + ": pass the id, not the object, and read the order when the task runs")
        for order in seen["failed"]:
            label = f"place_order({order}, {seen['totals'][order]})"
            sent = seen["messages"][order]
            if sent:
                mine = [r for r in reads if r["key"] == order]
                billed = [e["total"] for e in invoices if e["key"] == order]
                ends = [seen["endings"][m.id] for m in sent]
                said = (f"{label} sent {len(sent)} send_invoice task(s) for order {order}, whose commit the check "
                        "refused (the transaction rolled back, CommitFailed): the order does not exist, yet its task "
                        f"was sent; it read the order {len(mine)} time(s), "
                        f"{'found it' if any(r['found'] for r in mine) else 'never found it'}, "
                        + (f"invoiced {billed}, " if billed else "")
                        + f"and {ends[0].describe() if ends else 'never ran'}")
                raise AssertionError(said + ". A task sent inside the transaction runs whether or not the commit "
                                     "comes (a retry, a wait or a countdown only hides that): send it once the commit "
                                     "is done, tx.on_commit(...), so a rolled-back order sends nothing")
        for order in seen["holds"]:
            found = [r for r in reads if r["key"] == order and r["found"]]
            gap = found[0]["at"] - commits[order]
            assert gap <= LATE_S, (
                f"send_invoice read order {order} {gap:.2f} s after its commit (commits were held 0.05 to 1.45 s): "
                "the task waited on purpose (a sleep, a countdown) instead of being sent when the commit is done. "
                "A fixed wait is too short for a slow commit and too long for a quick one")
        for order in placed:
            billed = [e for e in invoices if e["key"] == order]
            want = seen["changed_to"] if order == edited else seen["totals"][order]
            assert len(billed) == 1, f"order {order} was invoiced {len(billed)} times; once"
            assert billed[0]["total"] == want, f"order {order} was invoiced for {billed[0]['total']}, not {want}"


def _mentions(message) -> list:
    """The order ids a message carries: positional, keyword, or inside an object."""
    found = []
    for value in list(message.args) + list(message.kwargs.values()):
        if isinstance(value, dict):
            found += list(value.values())
        elif isinstance(value, (list, tuple)):
            found += list(value)
        else:
            found.append(value)
    return found


# -- 2. deploy ----------------------------------------------------------------------------------------------------
class Deploy(Exercise):
    """Old messages notify(user_id) and new ones, queued before the worker on the new code reads them: each
    delivered once, old ones by e-mail (what the old code did), new ones by the channel asked for."""

    id = "13.deploy"
    module = "ex13_deploy"
    functions = ("notify", "request_notification")
    wait_s = 6.0

    def run(self, s, observed):
        task = task_named(s.mod, "notify")
        ledger = ex13_notify.deliveries()
        ledger.clear()
        rng = random.SystemRandom()
        users = rng.sample(range(100, 999), 7)
        old = [("old", users[0], {"args": (users[0],)}), ("old", users[1], {"kwargs": {"user_id": users[1]}}),
               ("old", users[2], {"args": (users[2],)})]
        channels = [rng.choice(ex13_notify.CHANNELS[1:]), rng.choice(ex13_notify.CHANNELS[1:]), "email"]
        results = []
        # the deploy: messages from the old code wait in the queue, then the new code's callers send theirs
        for _, user, shape in old[:2]:
            results.append(("old", user, "email", s.app.send_task(task.name, **shape),
                            call_repr(task.name, shape.get("args", ()), shape.get("kwargs"))))
        for user, channel in zip(users[3:6], channels):
            label = f"request_notification({user}, {channel!r})"
            called = call(s.mod.request_notification, user, channel, name=label, source=s.source)
            if not isinstance(called.value, AsyncResult):
                raise Incorrect(f"{label} returned {called.value!r}; it must send the notification and return the "
                                "AsyncResult that delay/apply_async gives")
            results.append(("new", user, channel, called.value, label))
        s.consume()
        _, user, shape = old[2]  # an old web server, not yet replaced, still sends the old way
        results.append(("old", user, "email", s.app.send_task(task.name, **shape),
                        call_repr(task.name, shape.get("args", ()), shape.get("kwargs"))))
        begun = time.monotonic()
        endings = [ending(r[3], budget(max(0.1, begun + self.wait_s - time.monotonic())), sent=begun)
                   for r in results]
        time.sleep(0.2)  # a second delivery would come now
        entries = ledger.entries()
        waiting = self._waiting(s, {r[1] for r in results})
        for (kind, user, channel, result, label), end in zip(results, endings):
            got = [e["channel"] for e in entries if e["key"] == user]
            later = waiting.get(user, [])
            observed.append(f"{kind} message {label}: {end.describe()}; delivered {got or 'nothing'}"
                            + (f"; {len(later)} more message(s) for the user still to run ({later[0]})" if later
                               else ""))
        return {"results": results, "endings": endings, "entries": entries, "task": task, "waiting": waiting}

    @staticmethod
    def _waiting(s, users: set) -> dict:
        """User -> the messages for that user still to run when the check ends: sent from here and never run, or
        held by the worker for a later time (an eta, a countdown): each one a delivery to come."""
        waiting: dict = {}
        seen = set()

        def note(task_id, name, args, kwargs, when):
            values = list(args or ()) + list((kwargs or {}).values())
            for user in users & {v for v in values if isinstance(v, int)}:
                if task_id not in seen:
                    seen.add(task_id)
                    waiting.setdefault(user, []).append(f"{name.rsplit('.', 1)[-1]}{tuple(args or ())} {when}")

        for m in list(s.sent):
            if not AsyncResult(m.id, app=s.app).ready():
                eta = f"due {m.eta - time.time():+.1f} s from now" if m.eta else "not run yet"
                note(m.id, m.task, m.args, m.kwargs, eta)
        try:
            held = s.app.control.inspect(destination=[s.worker.nodename], timeout=budget(1.0)).scheduled() or {}
        except Exception:  # an answer that cannot be inspected: the sends from here still count
            held = {}
        for entries in held.values():
            for entry in entries or []:
                request = entry.get("request") or {}
                note(request.get("id"), str(request.get("name") or request.get("type") or "task"),
                     request.get("args"), request.get("kwargs"), f"held by the worker until {entry.get('eta')}")
        return waiting

    def judge(self, seen, observed):
        entries = seen["entries"]
        import os

        here = [e for e in entries if e.get("pid") == os.getpid()]
        assert not here, ("a notification was delivered in the process that called request_notification, not on a "
                          "worker: send the task (delay/apply_async), do not call it")
        for (kind, user, channel, result, label), end in zip(seen["results"], seen["endings"]):
            got = [e["channel"] for e in entries if e["key"] == user]
            if end.state == "FAILURE":
                said = f"the {kind} message {label} failed on the new code with {end.error}: {end.message}"
                if end.error == "TypeError" and kind == "old":
                    said += (": messages sent by the old code carry only user_id, and they are still in the queue "
                             "when the new workers start. A new argument needs a default (or the change a new task "
                             "name), so that both kinds of message run")
                raise AssertionError(said)
            assert end.state == "SUCCESS", f"the {kind} message {label} {end.describe()}"
            if not got:
                said = f"the {kind} message {label} ended SUCCESS, but nothing was delivered to user {user}"
                if kind == "old":
                    said += (": the new code dropped (or swallowed the error of) a message the old code sent. Old "
                             "messages must still be delivered, as the old code did: by e-mail")
                raise AssertionError(said)
            assert len(got) == 1, f"user {user} got {len(got)} deliveries ({got}) from one {kind} message; one"
            later = seen["waiting"].get(user, [])
            if later:
                raise AssertionError(f"user {user} got one delivery from the {kind} message {label}, and {len(later)} "
                                     f"more message(s) for that user were still to run when the check ended "
                                     f"({'; '.join(later[:2])}): a second notification on its way. Send each "
                                     "notification once")
            if got[0] != channel:
                if kind == "old":
                    raise AssertionError(f"the old message {label} was delivered by {got[0]}: the old code sent every "
                                         "notification by e-mail, and its messages must keep that meaning ('email' "
                                         "as the default)")
                raise AssertionError(f"{label} was delivered by {got[0]}, not by {channel}: pass the channel on")
        stray = {e["key"] for e in entries} - {r[1] for r in seen["results"]}
        assert not stray, f"users the check never notified got deliveries: {sorted(stray)[:5]}"


# -- 3. ratelimit -------------------------------------------------------------------------------------------------
JITTER_S = 0.07
"""How late a call may come after its turn on a loaded machine: any quota + 1 calls must span 1 - JITTER_S s or more.
Measured: the solution (turns exactly 1/quota apart), three checks at once with other helpers' work (load 11 to 19
on 2 cores), its tightest quota + 1 calls spanned 0.975 to 0.994 s (a late wake-up); a sliding log under a lock,
1.03 to 1.05 s. A limiter off by one call spans q/(q+1) <= 0.89 s (q <= 8), a bucket of two tokens (q-1)/q <= 0.875 s,
a counter per window a burst: below this on every quota the check draws."""
DRIFT_S = 0.02
"""The TYPICAL quota + 1 calls (the median of every run of them) must span 1 - DRIFT_S s or more: a late wake-up
shortens one run, not most of them, while a limiter whose window is shorter than a second (a log of 0.9 or 0.95 s)
shortens every one. Measured: the solution's median 0.99 to 1.00 s, the sliding log's 1.03 to 1.05 s."""
QUOTAS = (3, 7, 8)
"""The quotas the check draws from: never the 5 the notebook shows, and far enough from it that a limit written as
a number shows (too fast for 3, too slow for 7 or 8: below SLOWEST of the quota)."""
SLOW_REDIS_S = 0.01
"""Each Redis command of a task body waits this long on the check's workers, as across a network: a limiter that
reads the schedule and then writes it (two commands) lets two threads that start together take the same turn."""
PHASE = 0.45
"""Where in a wall-clock second the check sends its batch."""
SECOND_PART_S = 0.6
"""The second part of the batch is sent this long after the first (half the quota): past the first part's turns, well
within the second in which they came."""
SLOWEST = 0.8
"""The calls, from first to last, must average at least this share of the quota: a limiter that waits far longer
than it needs to is not a limiter but a sleep."""


class RateLimit(Exercise):
    """Two workers (three threads each) sync contacts through the partner, whose quota the check sets: in no
    window of a second more calls than the quota, and the whole batch near the quota's pace."""

    id = "13.ratelimit"
    module = "ex13_ratelimit"
    functions = ("wait_for_turn",)
    fleet = True

    def run(self, s, observed):
        task = task_named(s.mod, "sync_contact")
        rng = random.SystemRandom()
        quota = rng.choice(QUOTAS)
        ex13_partner.set_quota(quota)
        ledger = ex13_partner.calls()
        ledger.clear()
        shared = ex13_partner.shared_redis()
        for name in shared.scan_iter(match=ex13_partner.key("*"), count=200):  # a limiter's state from earlier runs
            shared.delete(name)
        lines = [parse_line(name, f"celery -A {s.name} worker -P threads -c 3", s.name)
                 for name in ("a", "b")]
        fleet = Fleet(s, lines)
        for worker in fleet.workers:  # a Redis across a network: a limiter that reads, then writes, races
            worker.env[SLOW_REDIS_ENV] = str(SLOW_REDIS_S)
        # each worker stands for one on a machine of its own: a limiter per host (a key named after it) shows
        hosts = [f"shop-{name}-{rng.randrange(16 ** 4):04x}" for name in ("a", "b")]
        for worker, host in zip(fleet.workers, hosts):
            worker.env[HOSTNAME_ENV] = host
        s.fleet = fleet
        fleet.start()
        # half the quota first, then quota + 3 more: enough for runs of quota + 1 calls within the second part alone
        early = max(1, quota // 2)
        contacts = rng.sample(range(10000, 99999), early + quota + 3)
        # start the batch in the middle of a wall-clock second: a counter per calendar second then lets its first
        # burst and the next one through within half a second, every time, not only when the phase happens so
        time.sleep(budget((PHASE - time.time() % 1.0) % 1.0))
        # the batch comes in two parts, the second SECOND_PART_S after the first: a window opened by a first call
        # then holds calls late in it, and the next window's burst comes right after them
        sent = [(task, (c,), fleet.send(task, (c,))) for c in contacts[:early]]
        time.sleep(SECOND_PART_S)
        sent += [(task, (c,), fleet.send(task, (c,))) for c in contacts[early:]]
        wait = len(contacts) / quota * 1.6 + 3
        jobs = fleet.jobs(sent, wait=budget(wait))
        time.sleep(0.1)
        entries = ledger.entries()
        times = sorted(e["at"] for e in entries)
        kept = sorted(k.decode() if isinstance(k, bytes) else k
                      for k in shared.scan_iter(match=ex13_partner.key("*"), count=200))  # the limiter's shared state
        observed.append(f"quota {quota} calls a second; {len(contacts)} contacts sent to workers a and b (-P threads "
                        f"-c 3 each, as on hosts {' and '.join(hosts)}): {early}, then the rest "
                        f"{SECOND_PART_S} s later")
        if times:
            first = times[0]
            observed.append("calls at " + ", ".join(f"{t - first:+.2f}" for t in times[:30]) + " s")
            span, at = tightest(times, quota)
            if span < float("inf"):
                observed.append(f"the tightest {quota + 1} calls took {span:.3f} s (from {times[at] - first:+.2f} s), "
                                f"the median {typical_span(times, quota):.3f} s")
        return {"quota": quota, "contacts": contacts, "jobs": jobs, "entries": entries, "times": times,
                "task": task, "app": s.app, "workers": len(lines), "kept": kept,
                "names": hosts + [w.nodename for w in fleet.workers]}

    def judge(self, seen, observed):
        quota, times, entries = seen["quota"], seen["times"], seen["entries"]
        # said first: calls that came too fast are the answer's fault, whatever else happened (on a loaded machine
        # a slow limiter's last task can also miss the check's wait)
        self._too_fast(seen, times, quota)
        failed = [j for j in seen["jobs"] if j.end.state not in ("SUCCESS",)]
        if failed:
            raise AssertionError(f"{len(failed)} of {len(seen['jobs'])} sync_contact tasks did not succeed: "
                                 f"{failed[0].describe()}")
        counts = {}
        for e in entries:
            counts[e["key"]] = counts.get(e["key"], 0) + 1
        missing = [c for c in seen["contacts"] if not counts.get(c)]
        assert not missing, (f"{len(missing)} contacts were never synced (call_partner({missing[0]}) was never "
                             "called): each task must call the partner once")
        twice = [c for c, n in counts.items() if n > 1]
        assert not twice, f"contact {twice[0]} was synced {counts[twice[0]]} times; once each"
        span = times[-1] - times[0]
        pace = pace_of(times)
        assert pace >= SLOWEST * quota, (
            f"{len(times)} calls took {span:.1f} s, {pace:.1f} a second, though the partner allows {quota}: the "
            "limiter waits far longer than it must (a fixed sleep?). Wait only until the next call is allowed, and "
            f"read the quota from calls_per_second() (it was {quota})")

    def _too_fast(self, seen, times: list[float], quota: int) -> None:
        """Raise when some quota + 1 calls came within a second (with fewer calls there is nothing to judge)."""
        span, at = tightest(times, quota)
        typical = typical_span(times, quota)
        if span < 1.0 - JITTER_S or typical < 1.0 - DRIFT_S:
            worst, _ = busiest(times, 1.0)
            said = (f"{quota + 1} calls reached the partner within {span:.2f} s (from {times[at] - times[0]:+.2f} s; "
                    f"at most {worst} within one second), though it allows {quota} a second")
            if span >= 1.0 - JITTER_S:  # no run much too short, but most of them a little: not a late wake-up
                raise AssertionError(
                    f"every run of {quota + 1} calls took about {typical:.2f} s (the median; the shortest {span:.2f} "
                    f"s), though the partner allows {quota} in any one second: the limiter's window is shorter than a "
                    f"second, or it lets one call too many through. Its gap must be 1/quota s ({1 / quota:.3f} s "
                    "here), its window a whole second, and the quota calls_per_second(), not one more")
            task, app = seen["task"], seen["app"]
            limit = task.rate_limit or app.conf.task_default_rate_limit
            if limit:
                said += (f": rate_limit={limit!r} is kept by each worker for itself (a token bucket in its memory), "
                         f"so {seen['workers']} workers let {seen['workers']} times as much through. The quota is "
                         "shared: keep the limiter's state in Redis, where every worker sees it")
            elif len(own := [k for k in seen["kept"] if any(len(n) > 2 and n in k for n in seen["names"])]) > 1:
                said += (f": the limiter kept its state under keys named after a worker or a host ({', '.join(own[:3])}"
                         f"{' ...' if len(own) > 3 else ''}), so each worker (or machine) had a quota of its own. The "
                         "partner counts every caller together: one key for all of them")
            elif not seen["kept"]:
                said += (": the limiter kept nothing in Redis (no key made with key(...)), so every process kept its "
                         "own count or waited its own time. The quota is shared by every worker and thread: keep the "
                         "limiter's state in Redis, where all of them see it, updated atomically")
            elif clump(times) >= 3:
                said += (f": {clump(times)} calls came at the same instant (within {CLUMP_S * 1000:.0f} ms): the "
                         "limiter lets a burst through. A counter per calendar second lets a whole second's quota go "
                         "at once, and the next second's right after it; a bucket that holds many tokens does the "
                         "same, and so do threads that all read the limiter's state before any of them writes it. "
                         "Space the calls: each takes the next turn, 1/quota s after the one before, in one atomic "
                         "step")
            elif sum(1 for a, b in zip(times, times[1:]) if b - a < CLUMP_S) >= 2:
                said += (": several pairs of calls came within 20 ms of each other, as if two threads had taken the "
                         "same turn: reading the limiter's state and then writing it is two steps, and threads that "
                         "start together both read before either writes. Take the turn in ONE atomic step (a Lua "
                         "script, or a lock around the read and the write)")
            elif span > 0.6:  # no burst (nor pairs): the calls are spaced, only a little too close
                said += (f": the calls came spaced, but a little too close (runs of {quota + 1} calls took "
                         f"{typical:.2f} s typically): the limiter lets one call too many into a second. Its gap "
                         f"must be 1/quota s ({1 / quota:.3f} s here), its window a whole second, and the quota "
                         "calls_per_second(), not one more")
            else:
                said += (": every process kept its own count or waited its own time, or the limiter lets a burst "
                         "through. Every worker and thread shares the quota: keep the limiter's state in Redis, "
                         f"updated atomically, and read the quota from calls_per_second() (it was {quota})")
            raise AssertionError(said)


CLUMP_S = 0.02
"""Calls closer than this came at the same instant, as far as a limiter is concerned."""


def busiest(times: list[float], window: float) -> tuple[int, int]:
    """The most calls (sorted times) within `window` s of one of them, and the index of that first one."""
    worst, at = 0, 0
    for i, t in enumerate(times):
        n = sum(1 for u in times[i:] if u < t + window)
        if n > worst:
            worst, at = n, i
    return worst, at


def tightest(times: list[float], quota: int) -> tuple[float, int]:
    """The shortest time (sorted times) that quota + 1 calls took, and the index of the first of them; inf if
    there were not that many calls."""
    spans = [(times[i + quota] - times[i], i) for i in range(len(times) - quota)]
    return min(spans, default=(float("inf"), 0))


def typical_span(times: list[float], quota: int) -> float:
    """The median time (sorted times) that quota + 1 calls in a row took; inf if there were not that many calls."""
    import statistics

    spans = [times[i + quota] - times[i] for i in range(len(times) - quota)]
    return statistics.median(spans) if spans else float("inf")


def pace_of(times: list[float]) -> float:
    """Calls a second from the first of these (sorted) times to the last; 0 for fewer than three calls."""
    if len(times) < 3 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def clump(times: list[float]) -> int:
    """The most calls (sorted times) within CLUMP_S of the first of them."""
    return max((sum(1 for u in times[i:] if u - t < CLUMP_S) for i, t in enumerate(times)), default=0)


# -- 4. revoke ----------------------------------------------------------------------------------------------------
LATER_S = 86400 + 3600 + 61
"""How far ahead the check moves the clock for a second load of the module: past a minute, an hour and a day."""


def started_with(report) -> list[dict]:
    """What each start of a check's worker reported (host.py): its node, pid, and the state file it resolved."""
    import json

    try:
        lines = report.read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def state_path_later(s) -> subprocess.Popen:
    """A load of the learner's module with the clock LATER_S ahead, in the worker's folder (its result: read it with
    `path_later`)."""
    return subprocess.Popen([sys.executable, "-m", "coursekit.checks.import_later", str(s.path), s.name,
                             str(LATER_S)], cwd=s.path.parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def path_later(process: subprocess.Popen) -> tuple[bool, str | None]:
    """(whether the later load answered, the worker_state_db it gave)."""
    import json

    try:
        out, _ = process.communicate(timeout=budget(10))
        return True, json.loads(out.strip().splitlines()[-1])["worker_state_db"]
    except Exception:  # it could not load or did not answer in time: no evidence either way
        process.kill()
        process.communicate()
        return False, None


class Revoke(Exercise):
    """Posts wait in the queue while the worker is busy elsewhere (it reads another queue); cancel() revokes one;
    the worker is restarted, now reading the posts' queue: the cancelled post must never be published, the others
    must. The cancelled post's message must reach a worker (one that has prefetched it cannot be fished out of the
    queue), and the state file must be the same one at a start hours later."""

    id = "13.revoke"
    module = "ex13_revoke"
    functions = ("SETTINGS", "cancel")
    fleet = True

    def run(self, s, observed):
        task = task_named(s.mod, "publish")
        ledger = ex13_posts.published()
        ledger.clear()
        rng = random.SystemRandom()
        posts = rng.sample(range(100, 999), 3)
        target = rng.choice(posts)
        elsewhere = f"{s.app.conf.task_default_queue}.elsewhere"  # no message is ever sent there
        busy = parse_line("a", f"celery -A {s.name} worker -P solo -Q {elsewhere}", s.name)
        fleet = Fleet(s, [busy])
        s.fleet = fleet
        handle, name = tempfile.mkstemp(prefix="coursekit-ex13-statedb-", suffix=".jsonl")
        os.close(handle)
        report, begun = Path(name), time.time()
        later = state_path_later(s)
        try:
            seen = self._observe(s, observed, task, fleet, posts, target, report)
            seen["later"] = path_later(later)
            return seen
        finally:
            if later.poll() is None:
                later.kill()
                later.communicate()
            for start in started_with(report):  # the files the check's workers made, where THEY resolved them
                if start.get("statedb"):
                    path = Path(start["statedb"])
                    for made in path.parent.glob(path.name + "*") if path.parent.is_dir() else ():
                        try:
                            if made.is_file() and made.stat().st_mtime >= begun - 1:
                                made.unlink()
                        except OSError:
                            pass
            report.unlink(missing_ok=True)

    def _observe(self, s, observed, task, fleet, posts, target, report):
        for worker in fleet.workers:
            worker.env[STATE_REPORT_ENV] = str(report)
        fleet.start()
        broadcasts = []
        control = s.app.control
        plain = control.broadcast

        def noted(command, arguments=None, *args, **kwargs):
            broadcasts.append((command, dict(arguments or {})))
            return plain(command, arguments, *args, **kwargs)

        fleet.first_sent = time.time()
        results = {post: send(task, (post,), s.source) for post in posts}  # they wait in the queue: a backlog
        control.broadcast = noted
        try:
            call(s.mod.cancel, results[target], name=f"cancel(<AsyncResult of publish({target})>)", source=s.source)
        finally:
            control.broadcast = plain
        revokes = [a for c, a in broadcasts if c == "revoke"]
        asked = [i for a in revokes for i in ([a.get("task_id")] if isinstance(a.get("task_id"), str)
                                              else list(a.get("task_id") or []))]
        known_before = self._revoked(fleet, results[target].id, wait=0.6 if results[target].id in asked else 0.2)
        self._restart(s, fleet, parse_line("a", f"celery -A {s.name} worker -P solo", s.name), report)
        known_after = self._revoked(fleet, results[target].id, wait=0.2)
        begun = time.monotonic()
        endings = {post: ending(r, budget(max(0.1, begun + 4.0 - time.monotonic())), sent=begun)
                   for post, r in results.items() if post != target}
        # the worker takes the posts in the order they were sent, all of them at once (prefetch): once the others
        # have ended, the cancelled one has been received too, or never will be
        endings[target] = ending(results[target], budget(max(1.0, begun + 2.0 - time.monotonic())), sent=begun)
        time.sleep(0.2)
        published = ex13_posts.published().entries()
        starts = started_with(report)
        observed.append(f"sent publish() of posts {posts} to the queue while worker a read another; cancel() for post "
                        f"{target} sent {len(revokes)} revoke(s) {[str(i)[:8] for i in asked]}")
        observed.append(f"workers that knew the revoke: before the restart {known_before}, after it {known_after}")
        for post in posts:
            observed.append(f"publish({post}){' (cancelled)' if post == target else ''}: {endings[post].describe()}; "
                            f"published {sum(1 for e in published if e['key'] == post)} time(s)")
        observed.append("state file at each start of the worker: "
                        + (", ".join(str(start.get("statedb")) for start in starts) or "none reported"))
        return {"posts": posts, "target": target, "results": results, "revokes": revokes, "asked": asked,
                "known_before": known_before, "known_after": known_after, "endings": endings,
                "published": published, "settings": dict(getattr(s.mod, "SETTINGS", {}) or {}), "app": s.app,
                "starts": starts}

    @staticmethod
    def _revoked(fleet, task_id: str, wait: float = 0.3) -> list[str]:
        """The fleet's workers whose revoked list holds `task_id`, asked until all do or `wait` s have passed."""
        names = {w.nodename: w.name for w in fleet.workers}
        knows: list[str] = []

        def ask() -> bool:
            nonlocal knows
            replies = fleet.app.control.inspect(destination=list(names), limit=len(names),
                                                timeout=budget(0.5)).revoked() or {}
            knows = sorted(names[n] for n, ids in replies.items() if n in names and task_id in (ids or []))
            return len(knows) == len(names)

        settle(ask, wait, step=0.1)
        return knows

    @staticmethod
    def _restart(s, fleet, line, report) -> None:
        """Stop every worker (warm shutdown: it saves its state), then start it again under the same name, reading
        the posts' queue now (a deploy, or the backlog's turn)."""
        stop_all(fleet.workers, timeout=budget(5))
        fleet.workers = [FleetWorker(line, (s.path, s.name), s.path.parent.parent, s.exercise.id)]
        for worker in fleet.workers:
            worker.env[STATE_REPORT_ENV] = str(report)
            worker.spawn()
        for worker in fleet.workers:
            fleet._wait_for(worker)

    def judge(self, seen, observed):
        target, results, asked = seen["target"], seen["results"], seen["asked"]
        target_id = results[target].id
        published = seen["published"]
        label = f"publish({target})"
        for post in seen["posts"]:
            if post == target:
                continue
            mine = [e for e in published if e["key"] == post]
            assert len(mine) == 1, (f"publish({post}), which nobody cancelled, was published {len(mine)} time(s) "
                                    f"({seen['endings'][post].describe()}): only the cancelled post may be dropped")
        ran = [e for e in published if e["key"] == target]
        db = seen["settings"].get("worker_state_db") or seen["app"].conf.worker_state_db
        answered, later = seen["later"]  # the state file's name with the clock hours ahead
        renamed_by_time = answered and isinstance(db, str) and later != db
        if not ran:  # judged by its effect: a revoke that stuck, or an equivalent the task itself honours, ...
            if (seen["endings"][target].state == "NO RESULT" and target_id not in asked
                    and not seen["known_before"]):  # ... but not a message taken away before a worker could see it
                raise AssertionError(
                    f"{label} was never published, but no worker ever received its message, and cancel() sent no "
                    "revoke: cancel() took the message out of the broker. That works only while it waits in the "
                    "queue's list: a worker that has prefetched it (up to 4 a process, by default) runs it anyway. "
                    "Revoke the task (result.revoke()), and let the workers keep their revokes across a restart")
            if renamed_by_time:
                raise AssertionError(
                    f"{label} was not published, but only because the restart came soon: loaded with the clock "
                    f"{LATER_S // 3600} hours ahead (a worker started after tomorrow's deploy), your module names "
                    f"another state file: worker_state_db {db!r} now, {later!r} then. That worker opens an empty "
                    "file and forgets every revoke: the path must not change with the time of the import (%n for "
                    "the worker's name)")
            return
        if target_id not in asked:
            if not seen["revokes"]:
                raise AssertionError(f"{label} was published though cancel() was called for it: cancel() sent no "
                                     "revoke (call result.revoke(), or app.control.revoke(result.id))")
            others = [i for i in asked if i in {r.id for r in results.values()}]
            raise AssertionError(f"{label} was published though cancel() was called for it: cancel() revoked "
                                 f"{', '.join(str(i)[:40] for i in asked) or 'nothing'}, not the id of the task it "
                                 f"was given ({target_id})" + (", another post's task" if others else "")
                                 + ". Revoke result.id")
        if not seen["known_before"]:
            raise AssertionError(f"{label} was published though cancel() revoked its id: no worker's revoked list held "
                                 "the id afterwards, so the revoke reached no worker (a destination that names none "
                                 "of them?). Revoke it on every worker: result.revoke()")
        said = (f"{label} was revoked by cancel(), and the workers knew it (revoked list of "
                f"{', '.join(seen['known_before'])}); the check restarted every worker before it took the post, "
                f"and after the restart {', '.join(seen['known_after']) or 'no worker'} remembered the "
                "revoke, so the post was published anyway")
        files = list(dict.fromkeys(str(start.get("statedb")) for start in seen["starts"]))
        if not db:
            said += (": revoked ids live in each worker's memory only. Give the workers a state file "
                     "(worker_state_db, or --statedb) where they keep them across a restart")
        else:
            said += (f": worker_state_db is set ({str(db)[:80]}), but the file a worker read at its next start "
                     "was not the one it wrote" + (f" ({files[0]} at its first start, {files[1]} after the "
                                                   "restart)" if len(files) > 1 else "")
                     + ": the path must name the same file at every start of a worker (%n for its name; no pid, no "
                     "folder made afresh at import)")
            if renamed_by_time:  # the restart crossed the unit of time the name uses
                said += (f". Loaded with the clock {LATER_S // 3600} hours ahead your module names yet another "
                         f"file ({later!r}): the path must not change with the time of the import")
        if any(a.get("terminate") for a in seen["revokes"]):
            said += (". terminate=True adds nothing here: it only kills a task that is RUNNING, and this one was "
                     "still waiting in the queue")
        raise AssertionError(said)


commit = Commit()
deploy = Deploy()
ratelimit = RateLimit()
revoke = Revoke()
