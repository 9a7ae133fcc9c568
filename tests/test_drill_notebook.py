"""notebooks/14_drill.ipynb, run headless with a scripted learner: the notebook as committed, plus one cell at the end
that answers through the widget's own buttons (`ui.answer`, `ui.next`). The drill is not a chapter of course.toml
(its `[drill]` section points here), so this file tests what test_notebooks.py tests for lessons."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nbformat
import pytest
from conftest import SUITE_STATE

from coursekit import course, runner
from coursekit.drill import bank, records
from coursekit.drill.session import Outcome

NOTEBOOK = course.drill()["notebook"]
BY_ID = {q.id: q for q in bank.load()}
SCRIPT = [
    # (question, what the learner types, right?) -- one unreadable answer first, then a real one
    ("01.apply_messages", ["two", "0"], True),
    ("04.zero_or_nine", ["b"], False),
    ("05.print_level", ["b"], True),
    ("12.chain_si", ["13"], False),
    ("13.new_kwarg", ["FAILURE with a TypeError"], True),
    ("00.where_body", ["c"], True),
]
"""Six quick questions (two shared workers), made the weakest in the learner's progress so the notebook's drill
asks exactly these first."""

LEARNER = '''
import json
script = json.loads(%r)
seen = []
while (q := ui.drill.current) is not None:
    for typed in script[q.id]:
        outcome = ui.answer(typed)
        seen.append({"id": q.id, "typed": typed, "message": ui.message.value, "outcome": outcome and outcome.as_dict(),
                     "result": ui.result.value, "clock": ui.clock_text.value})
    ui.next()
print("DRILL " + json.dumps({"seen": seen, "score": ui.drill.score(), "end": ui.result.value,
                             "workers": len(ck.live_workers()), "progress": records.as_text()}))
'''


def test_drill_notebook_is_committed_clean_and_opens_with_its_question():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    drill = course.drill()
    first, last = nb.cells[0].source, nb.cells[-1].source
    assert first.startswith(f"# {drill['id']} ") and drill["question"] in first and drill["question_zh"] in first
    assert "Recap" in last and "interview" in last and "check()" in last


@pytest.mark.notebook
def test_drill_notebook_runs_with_a_scripted_learner(redis_url, monkeypatch):
    folder = Path(tempfile.mkdtemp(dir=SUITE_STATE, prefix="drill-"))
    monkeypatch.setenv("COURSEKIT_STATE_DIR", str(folder))  # a learner of its own: their progress picks the questions
    monkeypatch.setenv("COURSEKIT_BROKER_URL", redis_url)  # on the suite's broker, whatever that folder knows
    for qid, _, _ in SCRIPT:
        q = BY_ID[qid]
        records.record(Outcome(q.id, q.chapter, q.kind, None, q.answer, False, True, 1.0, 1.0))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LEARNER % json.dumps({qid: typed for qid, typed, _ in SCRIPT})))
    scripted = folder / NOTEBOOK.name
    nbformat.write(nb, scripted)
    outcome = runner.run(scripted)
    assert outcome.ok, outcome.line()
    printed = "".join(o.get("text", "") for o in outcome.notebook.cells[-1].outputs if o.get("name") == "stdout")
    shown = json.loads(printed.split("DRILL ", 1)[1])
    seen = shown["seen"]
    answered = {s["id"]: s for s in seen if s["outcome"]}
    assert sorted(answered) == sorted(qid for qid, _, _ in SCRIPT), "it asked the weakest topics, and all of them"
    unread = [s for s in seen if not s["outcome"]]
    assert [s["id"] for s in unread] == ["01.apply_messages"] and "'two' is not a number" in unread[0]["message"]
    for qid, _, right in SCRIPT:
        step = answered[qid]
        o = step["outcome"]
        assert o["correct"] is right and o["agrees_with_bank"], f"{qid}: {o}"
        assert BY_ID[qid].matches(o["observed"]), f"{qid}: the notebook's live run observed {o['observed']!r}"
        assert "the worker did" in step["result"] and "you predicted" in step["result"]
        assert step["clock"].endswith("s left"), "the countdown was running"
    assert shown["score"] == [4, 6]
    assert "04_priorities.ipynb" in shown["end"] and "12_canvas.ipynb" in shown["end"], "links to the weak lessons"
    assert shown["workers"] == 0, "the drill stopped its workers at the end"
    print(f"drill notebook: {outcome.seconds:.1f} s")  # the target: <= 60 s (measured, not asserted)
