"""One drill: questions picked from the bank, each answered under a countdown, then settled by its live experiment.

The terminal (`coursekit drill`) and the notebook (notebooks/14_drill.ipynb) both drive a `Drill`: `ask()` the next
question, `answer(text)` it (an unreadable answer raises `AnswerError` and may be typed again; the clock keeps
running), and read the `Outcome`: the prediction against what the real worker did. `close()` stops every worker the
drill started; use `with Drill(...) as drill:`.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field

from . import bank, records
from .bank import AnswerError, Question

SECONDS_PER_QUESTION = 60
MOCK_QUESTIONS = 10
MOCK_MINUTES = 20


@dataclass
class Outcome:
    id: str
    chapter: str
    kind: str
    predicted: object
    """The learner's answer as read (None when the countdown ran out first)."""
    observed: object
    """What the live experiment returned, in the answer's form (None when it could not run)."""
    correct: bool
    in_time: bool
    seconds: float
    """From the question being shown to the answer being typed."""
    experiment_s: float
    agrees_with_bank: bool = True
    """False when the live run contradicted the bank: the learner is judged against the run, and the drill says so."""
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Drill:
    questions: list[Question]
    lang: str = "en"
    seconds_per_question: float = SECONDS_PER_QUESTION
    minutes: float | None = None
    mock: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    record: bool = True
    """Write each outcome to the learner's progress (a test's scripted learner may not)."""

    def __post_init__(self):
        self.started = time.monotonic()
        self.current: Question | None = None
        self.shown_at = 0.0
        self._lab = None

    # -- flow ------------------------------------------------------------------------------------------
    @property
    def lab(self):
        if self._lab is None:  # the workers start on the first answer, not when the drill is built
            from .lab import DrillLab

            self._lab = DrillLab()
        return self._lab

    def remaining_s(self) -> float | None:
        """Seconds left for the whole drill (None: no overall limit)."""
        if self.minutes is None:
            return None
        return max(0.0, self.minutes * 60 - (time.monotonic() - self.started))

    def left_for_question(self) -> float:
        left = self.seconds_per_question - (time.monotonic() - self.shown_at)
        total = self.remaining_s()
        return max(0.0, left if total is None else min(left, total))

    def ask(self) -> Question | None:
        """The next question, its countdown started; None when every question is done or the time is up."""
        done = len(self.outcomes)
        if done >= len(self.questions) or self.remaining_s() == 0.0:
            self.current = None
            return None
        self.current = self.questions[done]
        self.shown_at = time.monotonic()
        return self.current

    def read(self, text: str):
        """The typed answer in the question's form, or AnswerError (nothing recorded, ask again)."""
        if self.current is None:
            raise AnswerError("no question is open: ask() for the next one")
        return self.current.parse(text, self.lang)

    def answer(self, text: str | None) -> Outcome:
        """Judge `text` (None or late: out of time) for the open question, after running its experiment live."""
        q = self.current
        if q is None:
            raise AnswerError("no question is open: ask() for the next one")
        took = time.monotonic() - self.shown_at
        in_time = text is not None and self.left_for_question() > 0
        predicted = self.read(text) if text is not None else None  # AnswerError leaves the question open
        outcome = self.settle(q, predicted, in_time, took)
        self.outcomes.append(outcome)
        self.current = None
        if self.record:
            records.record(outcome)
        return outcome

    def settle(self, q: Question, predicted, in_time: bool, took: float) -> Outcome:
        began = time.monotonic()
        try:
            observed, error = q.settle(self.lab), ""
        except Exception as exc:  # a broker or worker problem: say it, keep the drill going
            observed, error = None, f"{type(exc).__name__}: {exc}"
        spent = time.monotonic() - began
        if observed is None:
            correct, agrees = in_time and q.matches(predicted), True
        else:
            agrees = q.matches(observed)
            # Judged against the run when it contradicts the bank: the worker is the truth here.
            correct = in_time and predicted is not None and (
                q.matches(predicted) if agrees else _same(q, predicted, observed))
        return Outcome(q.id, q.chapter, q.kind, predicted, observed, bool(correct), in_time, round(took, 1),
                       round(spent, 1), agrees, error)

    # -- the end ---------------------------------------------------------------------------------------
    def score(self) -> tuple[int, int]:
        return sum(o.correct for o in self.outcomes), len(self.outcomes)

    def weakest_chapters(self, limit: int = 3) -> list[str]:
        """Chapters with wrong answers in this drill, most missed first."""
        missed: dict[str, int] = {}
        for o in self.outcomes:
            if not o.correct:
                missed[o.chapter] = missed.get(o.chapter, 0) + 1
        return sorted(missed, key=lambda ch: (-missed[ch], ch))[:limit]

    def close(self) -> None:
        if self._lab is not None:
            self._lab.close()
            self._lab = None

    def __enter__(self) -> "Drill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _same(q: Question, predicted, observed) -> bool:
    if q.kind == "number":
        try:
            return abs(float(predicted) - float(observed)) <= q.tolerance
        except (TypeError, ValueError):
            return False
    if q.kind == "keywords":
        return q.matches(predicted)
    return predicted == observed


# -- picking questions ---------------------------------------------------------------------------------------
def pick(chapter: str | None = None, count: int | None = None, mock: bool = False, seed: int | None = None,
         questions: list[Question] | None = None) -> list[Question]:
    """The questions of one drill. `chapter`: that chapter's, in bank order. Otherwise the learner's weakest
    chapters first (from progress), then the rest shuffled; a mock interview takes one question from each of
    `MOCK_QUESTIONS` different chapters."""
    pool = questions if questions is not None else bank.load()
    rng = random.Random(seed)
    if chapter is not None:
        chosen = [q for q in pool if q.chapter == chapter.zfill(2)]
        if not chosen:
            known = sorted({q.chapter for q in pool})
            raise AnswerError(f"no drill questions for chapter {chapter!r}: pick one of {', '.join(known)}")
        return chosen[:count] if count else chosen
    weak = records.weakest(pool)
    ranked = sorted(pool, key=lambda q: (weak.get(q.id, 0.5), rng.random()))
    if mock:
        count = count or MOCK_QUESTIONS
        seen, chosen = set(), []
        for q in ranked:
            if q.chapter not in seen:
                seen.add(q.chapter)
                chosen.append(q)
        return chosen[:count]
    return ranked[:count] if count else ranked


def mock(seed: int | None = None, lang: str = "en", **kw) -> Drill:
    """A mock interview: ten questions across chapters, twenty minutes, no explanations until the report."""
    return Drill(pick(mock=True, seed=seed), lang=lang, minutes=MOCK_MINUTES, mock=True, **kw)
