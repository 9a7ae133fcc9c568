"""Chapter 12 exercises: canvas, judged on what the workers ran, in which order, with which arguments, and on the
side effects the lab's tasks leave in ledgers.

12.chain sends the learner's order pipeline for an order id of its own and reads every step back: its run in the
recording, the arguments stored with its result (`result_extended`), the step that sent it (`parent_id`), the
charge and the release ticket in their ledgers. One item of the order changes after pipeline() returns, so a sum
worked out while building the workflow shows. 12.chord gives its pages hidden word counts and marks one flaky
(its first fetch raises), and expects the chord's callback to run once, after every page, with the right total,
and count_words to be called once per fetch run. 12.errback marks some cards of its own list declined and
expects the ledger of failures to hold exactly the ids of the payments that failed, written on a worker by an
error callback; a declined payment the check sends without one must leave no entry.
"""
from __future__ import annotations

import os
import random
import re
import string
import time

from celery.canvas import Signature
from celery.result import AsyncResult, GroupResult
from celery.signals import before_task_publish

from ..budget import budget
from ..calls import call
from ..evidence import call_repr, ending
from ..exercise import Exercise
from ..labs import canvas
from ..ledger import Ledger
from ..outcomes import Incorrect
from ..trials import task_named

LAB = "coursekit.labs.canvas"
STEPS = ("load_order", "sum_prices", "charge", "release_stock", "email")


def unsent(value, name: str) -> Signature:
    """The learner's function must return the workflow as a signature, not send it."""
    if isinstance(value, (AsyncResult, GroupResult)):
        raise Incorrect(f"{name} returned a {type(value).__name__}: it sent the workflow itself. Return the "
                        "signature unsent (chain(...) or chord(...), without .apply_async() or .delay()): the "
                        "check sends it")
    if not isinstance(value, Signature):
        raise Incorrect(f"{name} returned {value!r}, not a signature: build the workflow with chain(...) / "
                        "chord(...) from task signatures such as task.s(...), and return it")
    return value


def published_nothing(called, name: str) -> None:
    if called.published:
        raise Incorrect(f"{name} published {len(called.published)} message(s) itself: it must only build the "
                        "workflow and return it; the check sends it")


def send_signature(sig: Signature, name: str):
    from celery.canvas import group

    try:
        return sig.apply_async()
    except NotImplementedError as exc:
        raise Incorrect(f"sending what {name} returned raised NotImplementedError: {str(exc).splitlines()[0]}") \
            from None
    except Exception as exc:
        said = f"sending what {name} returned raised {type(exc).__name__}: {exc}"
        if isinstance(sig, group):
            said += (". A group sends every task at once, each with only the arguments written in it (Celery checks "
                     "them as it sends): steps that need the one before must be a chain")
        raise Incorrect(said) from None


def executed(app, results) -> list[str]:
    """The ids among `results` that a worker ran: their stored result names the worker. A step Celery marked
    failed without running it (after a failed step of a chain, a chord's callback) has no events to wait for."""
    return [r.id for r in results if stored(app, r.id).get("worker")]


def short(task_name: str) -> str:
    return task_name.rsplit(".", 1)[-1]


def stored(app, task_id: str) -> dict:
    """What the backend holds for `task_id` (result_extended: its args and kwargs too); {} when nothing."""
    try:
        meta = app.backend.get_task_meta(task_id)
    except Exception:
        return {}
    return meta or {}


# -- 1. chain -----------------------------------------------------------------------------------------------------
class Chain(Exercise):
    """The order pipeline for a hidden order id: load -> sum -> charge(sum, order_id) -> release_stock(order_id),
    immutable -> email(ticket). Each step once, in that order, with those arguments; the e-mail carries the ticket
    that release_stock wrote to its ledger."""

    id = "12.chain"
    module = "ex12_chain"
    functions = ("pipeline",)
    lab = LAB
    wait_s = 10.0

    def run(self, s, observed):
        rng = random.SystemRandom()
        order = rng.randint(100, 999)
        charges, stock = Ledger("ex12-charges"), Ledger("ex12-stock")
        charges.clear()
        stock.clear()
        name = f"pipeline({order})"
        built_with = rng.randint(1, 9)
        canvas.add_item(order, built_with)  # the order as pipeline() sees it...
        called = call(s.mod.pipeline, order, name=name, source=s.source)
        published_nothing(called, name)
        sig = unsent(called.value, name)
        added = rng.choice([p for p in range(11, 40) if p != built_with])
        canvas.add_item(order, added)  # ...and as the chain must find it: one item changed in between
        stale = canvas.prices_of(order)[:-1] + [built_with]
        s.consume()
        begun = time.monotonic()
        result = send_signature(sig, name)
        if isinstance(result, GroupResult):
            ending(result.results[-1], budget(self.wait_s), sent=begun)
        else:
            ending(result, budget(self.wait_s), sent=begun)
        time.sleep(0.2)  # the worker sends each later step itself: let a slow worker's last events come in
        chained, node = [], (result.results[-1] if isinstance(result, GroupResult) else result)
        while node is not None:  # the chain's steps, from its last: result.parent leads back
            chained.append(node)
            node = node.parent
        members = result.results if isinstance(result, GroupResult) else chained
        rec = s.recording(expect=executed(s.app, members))
        tasks = rec.tasks
        names = dict(zip(tasks.task_id, tasks.name))
        for m in s.sent:  # sent here but never received (a step the worker marked failed, say)
            names.setdefault(m.id, m.task)
        runs = s.runs(list(names))
        steps = {}
        for task_id, task_name in names.items():
            if not task_name:
                continue
            meta = stored(s.app, task_id)
            steps.setdefault(short(task_name), []).append(
                {"id": task_id, "runs": runs.get(task_id, []), "state": meta.get("status", "PENDING"),
                 "result": meta.get("result"), "args": tuple(meta.get("args") or ()),
                 "kwargs": dict(meta.get("kwargs") or {}), "parent": meta.get("parent_id")})
        observed.append(f"{name} -> {sig!r}"[:300])
        for step in STEPS:
            for one in steps.get(step, []):
                observed.append(f"{call_repr(step, one['args'], one['kwargs'])}: {one['state']}, ran "
                                f"{len(one['runs'])} time(s), result {str(one['result'])[:60]}")
        return {"order": order, "steps": steps, "charges": charges.entries(), "stock": stock.entries(),
                "name": name, "duration": rec.duration, "prices": canvas.prices_of(order), "stale": stale}

    def judge(self, seen, observed):
        order, steps, name = seen["order"], seen["steps"], seen["name"]
        prices = seen["prices"]
        amount = sum(prices)
        # the first step that went wrong, in pipeline order: its failure says what the learner wrote
        for step in STEPS:
            got = steps.get(step, [])
            if not got:
                if step == "release_stock":
                    raise AssertionError(f"{name} never sent release_stock: after the charge the order's stock "
                                         "must be released, by release_stock(order_id)")
                raise AssertionError(f"{name} never sent {step}: the pipeline is load_order -> sum_prices -> charge "
                                     "-> release_stock -> email")
            assert len(got) == 1, f"{step} was sent {len(got)} times for one order; each step runs once"
            one = got[0]
            if one["state"] == "FAILURE" and not one["runs"]:
                continue  # marked failed because an earlier step failed; that one is named below
            if one["state"] == "FAILURE":
                self._failed(step, one, order, amount)
        runs_in_order = []
        for step in STEPS:
            one = steps[step][0]
            assert one["runs"], (f"{step} never ran ({one['state']}): an earlier step must hand it on; in a chain the "
                                 "worker sends each step when the one before it succeeds")
            assert len(one["runs"]) == 1, f"{step} ran {len(one['runs'])} times; once is enough"
            runs_in_order.append((step, one["runs"][0]))
        for (a, _), (b, _) in zip(runs_in_order, runs_in_order[1:]):
            assert steps[b][0]["parent"] == steps[a][0]["id"], (
                f"{b} was not sent by {a}: it was sent by {'the caller' if not steps[b][0]['parent'] else 'another task'}"
                f", so it did not wait for {a}'s end. In a chain the worker that "
                "ran a step sends the next one")
        for (a, ra), (b, rb) in zip(runs_in_order, runs_in_order[1:]):
            ended_a = ra["at"] + max(0.0, (ra.get("ended") or ra["started"]) - ra["started"])
            assert rb["at"] >= ended_a - 0.05, (f"{b} started before {a} had ended: the steps ran side by side (a "
                                                "group?), not one after another (a chain)")
        loaded, summed = steps["load_order"][0], steps["sum_prices"][0]
        if self._args(summed) != (loaded["result"],) or self._args(steps["charge"][0])[:1] != (summed["result"],):
            said = (f"sum_prices received {self._args(summed)} and charge {self._args(steps['charge'][0])}, but when the "
                    f"chain ran load_order returned {loaded['result']} and sum_prices {summed['result']}")
            if self._args(summed) == (seen["stale"],) or self._args(steps["charge"][0])[:1] == (sum(seen["stale"]),):
                said += (f": the order as it was when pipeline() was called ({seen['stale']}); the check changed one "
                         "item in between, as a customer might")
            raise AssertionError(said + ". Compute nothing in pipeline(): each step must get the previous step's "
                                 "result, handed on by the chain (a partial, .s())")
        charge = steps["charge"][0]
        charged = self._args(charge)
        assert charged == (amount, order), (f"charge received {charged}; it should get the sum of the prices "
                                            f"({amount}) first, then the order id: charge.s({order}) in a chain")
        release = steps["release_stock"][0]
        assert self._args(release) == (order,), (
            f"release_stock received {self._args(release)}: it takes only the order id. In a chain a step gets the "
            "previous result prepended unless it is immutable (.si)")
        entries = [e for e in seen["charges"] if e["key"] == order]
        assert len(entries) == 1 and entries[0].get("amount") == amount, (
            f"the charges ledger holds {seen['charges']} for order {order}; expected one charge of {amount}")
        tickets = [e["ticket"] for e in seen["stock"] if e["key"] == order]
        assert len(tickets) == 1, f"the stock ledger holds {len(tickets)} releases of order {order}; expected one"
        mail = steps["email"][0]
        want = f"mailed: {tickets[0]}"
        assert self._args(mail) == (tickets[0],) and mail["result"] == want, (
            f"email received {self._args(mail)} and returned {mail['result']!r}; it should get the ticket that "
            f"release_stock returned ({tickets[0]!r}), handed on by the chain")

    @staticmethod
    def _handoff(step, got, target, error, amount) -> None:
        said = (f"{call_repr(step, got)} ran, but sending the next step failed: Celery checks a signature's arguments as it "
                f"sends it, and {error}")
        if target == "release_stock" and "takes 1 positional argument" in error:
            said += (". release_stock was handed the previous result too: a chain prepends it to every step that is "
                     "not immutable. Write release_stock.si(order_id)")
        elif target == "charge" and "missing" in error:
            said += (". charge got only the order id: .si() keeps the sum out. charge must receive the sum first: a "
                     "partial, charge.s(order_id)")
        raise AssertionError(said)

    @staticmethod
    def _args(one) -> tuple:
        """The step's arguments, keyword ones in their places (charge(amount, order_id), and so on)."""
        args, kwargs = tuple(one["args"]), dict(one["kwargs"])
        for name in ("amount", "order_id", "ticket", "prices"):
            if name in kwargs:
                args = args + (kwargs.pop(name),)
        return args + tuple(kwargs.values())

    def _failed(self, step, one, order, amount) -> None:
        error = str(one["result"])[:200] if one["result"] is not None else ""
        kind = type(one["result"]).__name__ if isinstance(one["result"], BaseException) else ""
        got = self._args(one)
        said = f"{call_repr(step, got)} failed"
        if error:
            said += f" with {kind or 'an error'}: {error}"
        named = re.match(r"(\w+)\(\) (?:takes|missing|got)", error)
        if named and named.group(1) != step:  # the step ran; sending the next one failed (Celery checks its args)
            self._handoff(step, got, named.group(1), error, amount)
        if step == "release_stock" and len(got) > 1:
            said += (f". It was handed the previous step's result too ({got[0]!r}): a chain prepends it to every "
                     "step that is not immutable. Write release_stock.si(order_id)")
        elif step == "charge" and len(got) == 1:
            said += (f". It got only {got!r}: .si() keeps the sum out. charge must receive the sum first: a partial, "
                     "charge.s(order_id)")
        elif step == "charge":
            said += f". It must receive the sum ({amount}) first, then the order id; check the order of the steps"
        elif step in ("sum_prices", "email") and not got:
            said += f". It received nothing: {step} needs the result of the step before it, handed on by a chain"
        raise AssertionError(said)


# -- 2. chord -----------------------------------------------------------------------------------------------------
WORDS = ["alpha", "bravo", "delta", "kilo", "lima", "oscar", "romeo", "sierra", "tango", "victor", "whiskey", "zulu"]


class Chord(Exercise):
    """A chord over a hidden list of pages, one of them flaky (its first fetch raises PageTimeout): merge must run
    once, after the last page, and return the total; the flaky page is retried by Celery (a run of its own)."""

    id = "12.chord"
    module = "ex12_chord"
    functions = ("fetch", "merge", "crawl")
    concurrency = 2
    wait_s = 12.0
    retry_s = 3.0
    """A retry that has not come this long after the RETRY state is too slow for a crawl (180 s by default)."""
    settle_s = 2.5
    """Every page fetched this long ago and still no result: the callback's result will not come."""

    def run(self, s, observed):
        fetch, merge = task_named(s.mod, "fetch"), task_named(s.mod, "merge")
        rng = random.SystemRandom()
        tag = "".join(rng.choices(string.ascii_lowercase, k=4))
        pages = [f"/{tag}/{w}" for w in rng.sample(WORDS, rng.randint(5, 7))]
        flaky = rng.choice(pages)
        canvas.mark("flaky", flaky)
        words = {page: rng.randint(40, 900) for page in pages}  # what count_words finds on each page
        canvas.write_words(words)
        name = f"crawl({pages!r})"
        called = call(s.mod.crawl, list(pages), name="crawl(pages)", source=s.source)
        published_nothing(called, "crawl(pages)")
        sig = unsent(called.value, "crawl(pages)")
        s.consume()
        begun = time.monotonic()
        result = send_signature(sig, "crawl(pages)")
        if isinstance(result, GroupResult):
            raise Incorrect("crawl returned a group: the pages are counted in parallel, but nothing merges them. "
                            "A chord is a group plus a callback that gets the list of results: chord(header, "
                            "merge.s())")
        self._wait(s.app, result, [m.id for m in s.sent], begun)
        end = ending(result, budget(0.5), sent=begun)
        header = [s.app.AsyncResult(i) for i in dict.fromkeys(m.id for m in s.sent)]
        s.recording(expect=executed(s.app, header + [result]))
        runs = s.runs(list(dict.fromkeys([m.id for m in s.sent] + [result.id])))  # merge is sent by a worker
        fetches, sent_per_page = {}, {}
        for m in s.sent:
            page = m.args[0] if m.args else next(iter(m.kwargs.values()), None)  # fetch.s(page) or fetch.s(page=...)
            if m.task == fetch.name and page is not None and m.retries == 0:
                sent_per_page[page] = sent_per_page.get(page, 0) + 1
                fetches[m.id] = page
        merge_id = result.id
        observed.append(f"{len(pages)} pages, flaky: {flaky}; {name}"[:300])
        for tid, page in fetches.items():
            observed.append(f"fetch({page!r}): runs {[r['outcome'] for r in runs.get(tid, [])]}")
        observed.append(f"merge: {end.describe()}, runs {[r['outcome'] for r in runs.get(merge_id, [])]}")
        counted = {page: int(canvas.client().get(canvas.attempts_key(page)) or 0) for page in pages}
        return {"pages": pages, "flaky": flaky, "end": end, "runs": runs, "fetches": fetches, "merge_id": merge_id,
                "words": words, "counted": counted,
                "sent_per_page": sent_per_page, "fetch": fetch, "merge": merge, "app": s.app, "result": result,
                "logs": s.worker.logs()}

    def _wait(self, app, result, header_ids, begun) -> None:
        """Until the chord's result is ready, or it is plain that it will not be soon: a header task has waited in
        RETRY for RETRY_S, or every header task succeeded SETTLE_S ago and still no result (an ignored one)."""
        since: dict[str, float] = {}
        while time.monotonic() - begun < budget(self.wait_s) and not result.ready():
            states = {i: app.AsyncResult(i).state for i in header_ids}
            now = time.monotonic()
            for key, hit in (("retry", "RETRY" in states.values()), ("done", set(states.values()) == {"SUCCESS"})):
                since[key] = since.get(key, now) if hit else now
            if now - since["retry"] > self.retry_s or now - since["done"] > self.settle_s:
                return
            time.sleep(0.1)

    def judge(self, seen, observed):
        pages, flaky, end, runs = seen["pages"], seen["flaky"], seen["end"], seen["runs"]
        fetch, merge = seen["fetch"], seen["merge"]
        want = sum(seen["words"].values())
        by_page = {page: tid for tid, page in seen["fetches"].items()}
        missing = [p for p in pages if p not in by_page]
        assert not missing, (f"no fetch was sent for {missing}: the chord's header must have one fetch.s(page) per "
                             "page crawl is given")
        twice = {p: n for p, n in seen["sent_per_page"].items() if n > 1}
        assert not twice, f"fetch was sent {max(twice.values())} times for {list(twice)[0]!r}: once per page"
        merge_runs = runs.get(seen["merge_id"], [])
        flaky_runs = runs.get(by_page[flaky], [])
        if end.state == "FAILURE" and end.error == "ChordError":
            why = ""
            if len(flaky_runs) <= 1:
                why = (f" fetch({flaky!r}) ran once and failed with PageTimeout, and nothing retried it: a chord's "
                       "callback runs only when every header task has succeeded")
                listed = tuple(getattr(fetch, "autoretry_for", None) or ())
                if fetch.max_retries == 0:
                    why += ". max_retries=0 allows no retry"
                elif listed and not any(isinstance(e, type) and issubclass(canvas.PageTimeout, e) for e in listed):
                    names = ", ".join(getattr(e, "__name__", str(e)) for e in listed)
                    why += f". autoretry_for=({names},) does not catch PageTimeout (a ConnectionError)"
            raise AssertionError(f"merge never ran: the chord failed with {end.message}.{why}")
        if end.state == "NO RESULT":
            state = seen["app"].AsyncResult(by_page[flaky]).state
            if state == "RETRY":
                delay = fetch.default_retry_delay
                raise AssertionError(f"fetch({flaky!r}) failed once and was set to RETRY, but its retry waits "
                                     f"default_retry_delay ({delay} s) and had not come after {end.waited} s: make "
                                     "it come within a second or two")
            if any(r["outcome"] == "SUCCESS" for r in merge_runs):
                raise AssertionError(f"merge ran, but its result was never stored, so the caller's .get() waited "
                                     f"{end.waited} s for nothing: do not ignore the result of the chord's callback "
                                     "(ignore_result)")
            raise AssertionError(f"no result from the chord within {end.waited} s (merge runs: {len(merge_runs)})")
        assert end.state == "SUCCESS", f"the chord's callback {end.describe()}"
        assert len(merge_runs) == 1, f"merge ran {len(merge_runs)} times; a chord's callback runs once"
        if end.value != want:
            said = f"merge returned {end.value!r}; the pages hold {want} words in all"
            if isinstance(end.value, (int, float)) and end.value == want - seen["words"][flaky]:
                said += (f": the flaky page {flaky!r} is missing from it. Its first fetch raised, and fetch must not "
                         "swallow that error (return 0 or None): let Celery retry it")
            raise AssertionError(said)
        assert len(flaky_runs) >= 2, (
            f"fetch({flaky!r}) ran {len(flaky_runs)} time(s) ({[r['outcome'] for r in flaky_runs]}): its first "
            "attempt raises PageTimeout, and the retry must be Celery's (autoretry_for or self.retry), a run of its "
            "own, not a loop inside one run")
        for page in pages:
            if page != flaky:
                got = runs.get(by_page[page], [])
                assert len(got) == 1, f"fetch({page!r}) ran {len(got)} times; it is not flaky, once is enough"
        for page in pages:
            got = len(runs.get(by_page[page], []))
            assert seen["counted"][page] == got, (
                f"count_words({page!r}) was called {seen['counted'][page]} times, but fetch({page!r}) ran {got} "
                "time(s): only fetch counts a page, once per run; merge must add up the counts it receives")
        last_start = max(r["at"] for page in pages for r in runs.get(by_page[page], []))
        assert merge_runs[0]["at"] >= last_start, "merge started before the last page had been fetched"


# -- 3. errback -----------------------------------------------------------------------------------------------------
class Errback(Exercise):
    """Hidden payments, some on declined cards: the ledger of failures must hold exactly the ids of the payments
    that failed, once each, written by an error callback the messages carried."""

    id = "12.errback"
    module = "ex12_errback"
    functions = ("pay", "record_failure", "submit")
    ledger = "ex12_failures"
    wait_s = 8.0

    def run(self, s, observed):
        pay = task_named(s.mod, "pay")
        rng = random.SystemRandom()
        tag = rng.randint(1000, 9999)
        cards = [f"card-{tag}-{i}" for i in range(rng.randint(5, 7))]
        declined = set(rng.sample(cards, rng.randint(2, 3)))
        canvas.mark("declined", *declined)
        ledger = Ledger(self.ledger)
        ledger.clear()
        links: dict[str, dict] = {}

        def note(headers=None, body=None, **_):
            embed = body[2] if isinstance(body, (list, tuple)) and len(body) > 2 and isinstance(body[2], dict) else {}
            if headers and headers.get("id"):
                links[headers["id"]] = {"errbacks": embed.get("errbacks") or [], "callbacks": embed.get("callbacks") or []}

        s.consume()
        before_task_publish.connect(note, weak=False)
        try:
            results, ready_at_return = {}, []
            for card in cards:
                amount = rng.randint(5, 500)
                label = f"submit({card!r}, {amount})"
                called = call(s.mod.submit, card, amount, name=label, source=s.source)
                if not isinstance(called.value, AsyncResult):
                    raise Incorrect(f"{label} returned {called.value!r}; it must send the payment and return the "
                                    "AsyncResult that apply_async gives")
                results[card] = called.value
                # a payment takes 50 ms on the worker: ready the moment submit returned means submit waited for it
                ready_at_return.append(called.value.ready())
        finally:
            before_task_publish.disconnect(note)
        if all(ready_at_return):
            raise Incorrect(f"every payment had ended by the time submit returned: submit waited for its result "
                            "(.get()), which holds the caller for the whole payment. Send it and return the "
                            "AsyncResult at once: the error callback does the waiting's work")
        # one more declined payment, sent by the check with no error callback: nothing may record it
        unlinked = f"card-{tag}-x"
        canvas.mark("declined", unlinked)
        bare = pay.apply_async((unlinked, rng.randint(5, 500)))
        begun = time.monotonic()
        endings = {card: ending(r, budget(max(0.1, begun + self.wait_s - time.monotonic())), sent=begun)
                   for card, r in results.items()}
        ending(bare, budget(max(0.1, begun + self.wait_s - time.monotonic())), sent=begun)
        failed = {results[c].id for c, e in endings.items() if e.state == "FAILURE"}
        deadline = time.monotonic() + budget(3.0)  # a one-argument errback is a task of its own: it comes later
        while time.monotonic() < deadline and len(ledger.entries()) < len(failed) and any(
                links.get(i, {}).get("errbacks") for i in failed):
            time.sleep(0.05)
        time.sleep(0.3)  # and an entry too many would come now
        entries = ledger.entries()
        s.recording(expect=[r.id for r in results.values()])
        for card, end in endings.items():
            observed.append(f"{card} ({'declined' if card in declined else 'good'}): {end.describe()}, id "
                            f"{results[card].id[:8]}")
        observed.append(f"ledger {self.ledger}: {[e['key'][:8] if isinstance(e['key'], str) else e['key'] for e in entries]}")
        return {"cards": cards, "declined": declined, "results": results, "endings": endings, "entries": entries,
                "links": links, "pay": pay, "logs": s.worker.logs(), "bare": (unlinked, bare.id), "here": os.getpid()}

    def judge(self, seen, observed):
        results, endings, declined = seen["results"], seen["endings"], seen["declined"]
        for card, end in endings.items():
            if card in declined:
                assert end.state == "FAILURE", (f"pay({card!r}) on a declined card {end.describe()}: a payment that "
                                                "fails must fail (raise), so that its error callback is called")
            elif end.state == "FAILURE" and "record_failure()" in end.message:
                raise AssertionError(f"pay({card!r}) on a good card ran, but calling record_failure after it failed "
                                     f"({end.message}): link= is the callback Celery calls on SUCCESS, with the "
                                     "result. The error callback is link_error=")
            else:
                assert end.state == "SUCCESS", f"pay({card!r}) on a good card {end.describe()}"
        failed = {results[c].id: c for c in declined}
        ids = {r.id: c for c, r in results.items()}
        keys = [e["key"] for e in seen["entries"]]
        links = seen["links"]
        sent_with = [links.get(r.id, {}) for r in results.values()]
        errbacks = [m for m in sent_with if m.get("errbacks")]
        if not errbacks:
            if any(m.get("callbacks") for m in sent_with):
                raise AssertionError("the payments carried a callback (link=), which Celery calls on SUCCESS, and no "
                                     "error callback: pass it as link_error=")
            if set(keys) - {seen["bare"][1]} == set(failed):
                raise AssertionError("the failures are in the ledger, but no message carried an error callback: "
                                     "pay recorded them itself. The exercise asks for an error callback: "
                                     "apply_async(..., link_error=record_failure.s())")
            raise AssertionError("no payment was sent with an error callback: pass link_error=record_failure.s() to "
                                 "apply_async")
        unlinked, bare_id = seen["bare"]
        assert bare_id not in keys, (
            f"the ledger holds the id of a payment the check sent itself, on a declined card ({unlinked}), WITHOUT an "
            "error callback: pay records its own failures. Leave that to the error callback (record_failure), so "
            "that a payment records a failure only when sent with one")
        here = [e for e in seen["entries"] if e.get("pid") == seen["here"]]
        assert not here, (f"{len(here)} ledger entr{'y was' if len(here) == 1 else 'ies were'} written by the process "
                          "that called submit, not on a worker: submit (or a thread it started) waited for the result. "
                          "The error callback must do the recording, on the worker")
        good = [k for k in keys if k in ids and ids[k] not in declined]
        assert not good, (f"the ledger holds the ids of {len(set(good))} payment(s) that went through "
                          f"({', '.join(ids[k] for k in dict.fromkeys(good))}): record only failures")
        stray = [k for k in keys if k not in ids]
        if stray:
            raise AssertionError(f"the ledger holds {len(stray)} id(s) of no payment ({str(stray[0])[:40]}...): record "
                                 "the FAILED task's id (request.id of the request an errback (request, exc, traceback) "
                                 "receives, or the one argument an old-style errback gets), not the errback's own id")
        missing = [failed_id for failed_id in failed if failed_id not in keys]
        if missing:
            said = (f"{len(missing)} of {len(failed)} failed payments are not in the ledger "
                    f"({', '.join(failed[m] for m in missing)})")
            raised = re.findall(r"Errback \S+ raised an exception", seen["logs"])
            if raised:
                said += f"; the worker logged '{raised[0]}'"
            raise AssertionError(said)
        doubled = [k for k in set(keys) if keys.count(k) > 1]
        assert not doubled, (f"{len(doubled)} failure(s) were recorded more than once "
                             f"({', '.join(failed.get(k, k) for k in doubled)}): each failed payment once")


chain = Chain()
chord = Chord()
errback = Errback()
