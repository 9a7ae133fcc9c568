"""Drill results in the learner's progress file (coursekit/progress.py), beside the exercises:

    "drill": {"06.late_child": {"chapter": "06", "asked": 3, "right": 1, "last": <unix time>, "last_right": false}}

A chapter's drill score is right/asked over its questions; `weakest()` ranks questions by it (chapters never drilled
count as half-known, between missed and mastered), so the next drill asks the weakest topics first, and
`coursekit progress` lists them.
"""
from __future__ import annotations

import time

from .. import progress, state

UNSEEN = 0.5


def record(outcome) -> None:
    data = progress.load()
    entry = data.setdefault("drill", {}).setdefault(
        outcome.id, {"chapter": outcome.chapter, "asked": 0, "right": 0, "last": None, "last_right": None})
    entry["asked"] += 1
    entry["right"] += int(outcome.correct)
    entry["last"], entry["last_right"] = time.time(), bool(outcome.correct)
    state.write(progress.FILE, data)
    from ..teamtable import publish

    publish(data)  # the facilitator's team table shows the drill's score too; never raises


def chapters(data: dict | None = None) -> dict[str, tuple[int, int]]:
    """Chapter -> (right, asked) over every drill so far."""
    data = progress.load() if data is None else data
    out: dict[str, list[int]] = {}
    for entry in data.get("drill", {}).values():
        tally = out.setdefault(entry["chapter"], [0, 0])
        tally[0] += entry["right"]
        tally[1] += entry["asked"]
    return {ch: (right, asked) for ch, (right, asked) in out.items()}


def weakest(questions, data: dict | None = None) -> dict[str, float]:
    """Question id -> a rank key in [0, 1]: its chapter's share of right answers, nudged by the question's own
    (lower is weaker, asked first)."""
    data = progress.load() if data is None else data
    by_chapter = chapters(data)
    seen = data.get("drill", {})
    ranks = {}
    for q in questions:
        right, asked = by_chapter.get(q.chapter, (0, 0))
        chapter = right / asked if asked else UNSEEN
        own = seen.get(q.id)
        mine = own["right"] / own["asked"] if own and own["asked"] else UNSEEN
        ranks[q.id] = round(0.8 * chapter + 0.2 * mine, 4)
    return ranks


def weakest_topics(limit: int = 3, data: dict | None = None) -> list[tuple[str, int, int]]:
    """The chapters drilled with the lowest share of right answers: (chapter, right, asked), weakest first."""
    tally = chapters(data)
    ranked = sorted(tally.items(), key=lambda item: (item[1][0] / item[1][1], -item[1][1], item[0]))
    return [(ch, right, asked) for ch, (right, asked) in ranked if right < asked][:limit]


def as_text(data: dict | None = None) -> str:
    """Lines for `coursekit progress`: the drill so far and its weakest topics, with the lesson to reread."""
    from ..course import chapters as course_chapters

    tally = chapters(data)
    if not tally:
        return "drill: not started (`coursekit drill`)"
    right = sum(r for r, _ in tally.values())
    asked = sum(a for _, a in tally.values())
    lines = [f"drill: {right}/{asked} answers right over {len(tally)} chapters"]
    stems = {ch.id: ch.stem for ch in course_chapters()}
    weak = weakest_topics(data=data)
    if weak:
        lines.append("weakest topics (the next `coursekit drill` asks these first):")
        lines += [f"  {ch}  {right}/{asked} right  reread notebooks/{stems.get(ch, ch)}.ipynb"
                  for ch, right, asked in weak]
    return "\n".join(lines)
