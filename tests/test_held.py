"""`held`: what workers hold while tasks run, as inspect() reports it, sampled and condensed into stretches."""
from __future__ import annotations

import pandas as pd

import coursekit as ck
from coursekit import held
from coursekit.worker import short_name


def test_a_short_name_is_what_the_worker_was_called():
    assert short_name("a-1234@vm") == "a" and short_name("my-worker-99@far") == "my-worker"
    assert short_name("celery@vm") == "celery" and short_name("a-b@vm") == "a-b"


def test_stretches_keep_one_row_per_period_in_which_nothing_changed():
    looks = pd.DataFrame([(t, w, r, q) for t, counts in ((0.0, (1, 4, 1, 0)), (0.1, (1, 4, 1, 0)), (0.2, (1, 4, 0, 0)),
                                                       (0.3, (1, 3, 0, 0)))
                          for w, r, q in (("a", *counts[:2]), ("b", *counts[2:]))],
                         columns=["t", "worker", "running", "reserved"])
    got = held.stretches(looks)
    assert list(got.columns) == ["from s", "to s", "looks", "a running", "a reserved", "b running", "b reserved"]
    assert got[["from s", "to s", "looks"]].values.tolist() == [[0.0, 0.1, 2], [0.2, 0.2, 1], [0.3, 0.3, 1]]
    assert got["a reserved"].tolist() == [4, 4, 3] and got["b running"].tolist() == [1, 0, 0]


def test_a_worker_busy_with_a_long_task_reserves_what_comes_next(clean_namespace):
    from coursekit.labs.spreading import app, nap

    with ck.Worker("coursekit.labs.spreading", name="solo") as w:
        long = nap.delay(1.0)
        assert held.running_on(app, [w], long.id) is w
        short = [nap.delay(0.05) for _ in range(3)]
        looks = held.sample(app, [w], until=lambda: all(r.ready() for r in [long, *short]), every=0.05)
    assert set(looks.worker) == {"solo"} and looks.running.max() == 1
    assert looks.reserved.max() == 3, "prefetch 4 x -c 1: the three short naps wait in the worker"
