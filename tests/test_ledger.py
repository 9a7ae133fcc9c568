"""coursekit.Ledger: side effects counted per business key, written by real pool processes."""
from __future__ import annotations

import coursekit as ck
from coursekit import namespace
from coursekit.labs.first import app


def test_tally_names_lost_duplicated_and_unexpected_keys(clean_namespace):
    book = ck.Ledger("tally")
    for key in [1, 2, 2, 2, 5]:
        book.write(key, note="x")
    assert len(book) == 5 and book.redis_key.startswith(namespace.prefix())
    got = book.tally(expected=[1, 2, 3])
    assert got == {"expected": 3, "done": 2, "lost": [3], "duplicated": {2: 3}, "unexpected": [5]}
    assert list(book.frame().columns[:3]) == ["key", "pid", "at"]
    book.clear()
    assert len(book) == 0 and book.tally([1])["lost"] == [1]


def test_entries_written_in_a_pool_child_survive_its_worker(clean_namespace):
    task = app.tasks["coursekit.labs.first.book"]
    with ck.Worker("coursekit.labs.first", concurrency=2) as w:
        ck.get(task.delay("ledger-child", 7))
        kids = w.children
        w.kill()
    entries = ck.Ledger("ledger-child").entries()
    assert [e["key"] for e in entries] == [7] and entries[0]["pid"] in kids
