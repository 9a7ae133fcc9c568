"""The drill's question bank: `drill/bank.toml`, the file course.toml's `[drill]` section points to.

One `[[question]]` table per question:
    id          "NN.slug", unique; NN is the chapter it draws on (00-13)
    chapter     "NN"
    kind        "choice" | "number" | "order" | "keywords"
    question, question_zh     the question, in English and Chinese
    choices     choice: the options (English; `choices_zh` may translate them); order: the task names to put in order
    answer      choice: one of `choices`; number: a number (`tolerance` around it, default 0); order: every name of
                `choices`, in the order they ran; keywords: groups a free answer must name, each group "a|b" = a or b
    experiment  "module:function" under coursekit.drill.experiments: it runs on real workers and returns what it
                observed, in the answer's form (a choice, a number, a list of names, a text naming the keywords)
    explain, explain_zh       why, naming the settings and their defaults
    seed        optional: the seed note's questions ("q1".."q6") and common problems ("p1".."p7") it answers
    corrects    optional: what the seed note says wrongly here, in one line

A learner's answer that cannot be read (an unknown choice, not a number, an empty answer) is an `AnswerError`
with a message saying what to type; it never counts against them.
"""
from __future__ import annotations

import importlib
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..errors import CourseError

KINDS = ("choice", "number", "order", "keywords")
SEEDS = ("q1", "q2", "q3", "q4", "q5", "q6", "p1", "p2", "p3", "p4", "p5", "p6", "p7")
EXPERIMENTS = "coursekit.drill.experiments"


class AnswerError(ValueError):
    """An answer the drill cannot read; the message says what to type instead."""


@dataclass(frozen=True)
class Question:
    id: str
    chapter: str
    kind: str
    question: str
    question_zh: str
    answer: object
    experiment: str
    explain: str
    explain_zh: str
    choices: tuple = ()
    choices_zh: tuple = ()
    tolerance: float = 0.0
    seed: tuple = ()
    corrects: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def text(self, lang: str = "en") -> str:
        return self.question_zh if lang == "zh" else self.question

    def explanation(self, lang: str = "en") -> str:
        return self.explain_zh if lang == "zh" else self.explain

    def options(self, lang: str = "en") -> tuple:
        return self.choices_zh if lang == "zh" and self.choices_zh else self.choices

    # -- reading a learner's answer --------------------------------------------------------------------
    def parse(self, raw: str, lang: str = "en"):
        """The learner's typed answer in the bank's form, or AnswerError saying what to type."""
        text = (raw or "").strip()
        if not text:
            raise AnswerError(_say(lang, "empty answer: type one", "答案为空：请输入") + " " + self.how_to(lang))
        if self.kind == "choice":
            return self._parse_choice(text, lang)
        if self.kind == "number":
            cleaned = text.replace(",", "").replace("_", "").replace(" ", "")
            try:
                value = float(cleaned)
            except ValueError:
                raise AnswerError(_say(lang, f"{text!r} is not a number: type digits, e.g. 3 or 0.5",
                                       f"{text!r} 不是数字：请输入数字，如 3 或 0.5")) from None
            if not math.isfinite(value):
                raise AnswerError(_say(lang, "type a finite number", "请输入有限的数字"))
            return value
        if self.kind == "order":
            return self._parse_order(text, lang)
        return text  # keywords: the free answer as typed

    def _parse_choice(self, text: str, lang: str):
        """A letter (a, b, ...), the option's text in either language, or its number 1..n (only where no option
        is itself a number, so "0" on a question about priority 0 means priority 0)."""
        options = self.options(lang)
        letters = "abcdefghij"[:len(options)]
        low = text.lower().rstrip(").")
        for i, option in enumerate(options):
            if low in (str(option).lower(), str(self.choices[i]).lower()):
                return self.choices[i]
        if len(low) == 1 and low in letters:
            return self.choices[letters.index(low)]
        numeric = any(str(c).strip().isdigit() for c in self.choices)
        if low.isdigit() and not numeric and 1 <= int(low) <= len(options):
            return self.choices[int(low) - 1]
        raise AnswerError(_say(lang, f"unknown choice {text!r}: type a letter, {', '.join(letters)}",
                               f"没有选项 {text!r}：请输入字母 {', '.join(letters)}"))

    def _parse_order(self, text: str, lang: str) -> list[str]:
        names = [n for n in re.split(r"[\s,>;]+", text) if n]
        known = {c.lower(): c for c in self.choices}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise AnswerError(_say(lang, f"unknown task name(s) {', '.join(unknown)}: use {' '.join(self.choices)}",
                                   f"未知的任务名 {', '.join(unknown)}：请使用 {' '.join(self.choices)}"))
        got = [known[n.lower()] for n in names]
        if sorted(got) != sorted(self.choices):
            raise AnswerError(_say(lang, f"name each task once: {' '.join(self.choices)}",
                                   f"每个任务名写一次：{' '.join(self.choices)}"))
        return got

    def how_to(self, lang: str = "en") -> str:
        if self.kind == "choice":
            return _say(lang, "letter (a, b, ...)", "字母（a、b……）")
        if self.kind == "number":
            return _say(lang, "number", "数字")
        if self.kind == "order":
            return _say(lang, f"order of {' '.join(self.choices)}", f"顺序：{' '.join(self.choices)}")
        return _say(lang, "short answer naming the setting, state or error", "简短回答，写出设置、状态或异常名")

    # -- judging ---------------------------------------------------------------------------------------
    def matches(self, value) -> bool:
        """True when `value` (a learner's parsed answer, or what an experiment observed) is this question's answer."""
        if self.kind == "choice":
            return value == self.answer
        if self.kind == "number":
            try:
                return abs(float(value) - float(self.answer)) <= self.tolerance
            except (TypeError, ValueError):
                return False
        if self.kind == "order":
            return list(value or []) == list(self.answer)
        text = str(value or "").lower()
        return all(any(alt.strip().lower() in text for alt in group.split("|")) for group in self.answer)

    def shown_answer(self, lang: str = "en") -> str:
        if self.kind == "choice":
            i = self.choices.index(self.answer)
            return f"{'abcdefghij'[i]}) {self.options(lang)[i]}"
        if self.kind == "number":
            tol = f" (± {self.tolerance:g})" if self.tolerance else ""
            return f"{self.answer:g}{tol}" if isinstance(self.answer, float) else f"{self.answer}{tol}"
        if self.kind == "order":
            return " > ".join(self.answer)
        return ", ".join(g.split("|")[0] for g in self.answer)

    def function(self):
        """The experiment's function (imported on first use: it brings worker code along)."""
        module, _, name = self.experiment.partition(":")
        return getattr(importlib.import_module(f"{EXPERIMENTS}.{module}"), name)

    def settle(self, lab):
        """Run the experiment on `lab`'s real workers; what it observed, in the answer's form."""
        return self.function()(lab)


def _say(lang: str, en: str, zh: str) -> str:
    return zh if lang == "zh" else en


# -- loading -----------------------------------------------------------------------------------------------
def path() -> Path:
    from ..course import drill

    return drill()["bank"]


def load(bank: Path | None = None) -> list[Question]:
    """Every question, in the file's order; CourseError naming the entry and field when one is malformed."""
    bank = bank or path()
    try:
        data = tomllib.loads(bank.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CourseError(f"cannot read the drill bank {bank}: {exc}", fix="restore it from git") from None
    out, seen = [], set()
    for i, raw in enumerate(data.get("question", []), 1):
        q = _question(raw, f"{bank.name} entry {i} ({raw.get('id', 'no id')})")
        if q.id in seen:
            raise CourseError(f"{bank.name}: two questions have the id {q.id!r}", fix="give each a unique id")
        seen.add(q.id)
        out.append(q)
    return out


REQUIRED = ("id", "chapter", "kind", "question", "question_zh", "answer", "experiment", "explain", "explain_zh")


def _question(raw: dict, where: str) -> Question:
    def bad(problem: str):
        return CourseError(f"{where}: {problem}", fix="see the format in coursekit/drill/bank.py")

    missing = [k for k in REQUIRED if not raw.get(k) and raw.get(k) != 0]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    known = set(REQUIRED) | {"choices", "choices_zh", "tolerance", "seed", "corrects"}
    fields = {k: raw[k] for k in known if k in raw}
    fields["choices"] = tuple(raw.get("choices", ()))
    fields["choices_zh"] = tuple(raw.get("choices_zh", ()))
    fields["seed"] = tuple(raw.get("seed", ()))
    q = Question(**fields, extra={k: v for k, v in raw.items() if k not in known})
    if q.extra:
        raise bad(f"unknown field(s) {sorted(q.extra)}")
    if q.kind not in KINDS:
        raise bad(f"kind {q.kind!r} is not one of {KINDS}")
    if not re.fullmatch(r"\d\d", q.chapter) or not q.id.startswith(f"{q.chapter}."):
        raise bad(f"id {q.id!r} must start with its chapter {q.chapter!r} and a dot")
    if q.kind == "choice" and (len(q.choices) < 2 or q.answer not in q.choices):
        raise bad("a choice question needs >= 2 choices, its answer among them")
    if q.choices_zh and len(q.choices_zh) != len(q.choices):
        raise bad("choices_zh must translate every choice")
    if q.kind == "number" and not isinstance(q.answer, (int, float)):
        raise bad("a number question's answer is a number")
    if q.kind == "order" and sorted(q.answer) != sorted(q.choices):
        raise bad("an order question's answer orders every name of `choices`, each once")
    if q.kind == "keywords" and (not isinstance(q.answer, list) or not all(isinstance(g, str) and g for g in q.answer)):
        raise bad("a keywords answer is a list of non-empty strings ('a|b' accepts either)")
    if ":" not in q.experiment:
        raise bad(f"experiment {q.experiment!r} is not 'module:function'")
    unknown_seed = [s for s in q.seed if s not in SEEDS]
    if unknown_seed:
        raise bad(f"seed {unknown_seed} not in {SEEDS}")
    return q


def by_chapter(questions: list[Question]) -> dict[str, list[Question]]:
    out: dict[str, list[Question]] = {}
    for q in questions:
        out.setdefault(q.chapter, []).append(q)
    return out
