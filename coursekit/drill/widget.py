"""The drill in a notebook (notebooks/14_drill.ipynb): one question at a time with a visible countdown, the answer,
then the live run, shown as predicted against observed; at the end the score, the weakest chapters with links to
their lessons, and (mock interview) the report as JSON and Markdown.

The countdown is redrawn by a daemon thread that ends with its question (or at the drill's end), so a headless run
never waits on it. `answer(text)` and `next()` do what the buttons do: a test's scripted learner uses them.
"""
from __future__ import annotations

import html
import re
import threading
from pathlib import Path

import ipywidgets as widgets
from IPython.display import display

from .bank import AnswerError, Question
from .report import WORDS, as_markdown, export, lesson, shown
from .session import Drill

TEXT = {
    "en": {"answer": "Answer", "next": "Next question", "running": "Running the experiment on a real worker ...",
           "left": "{s:.0f} s left", "up": "time is up: an answer now counts as late", "q": "Question {i} of {n}",
           "chapter": "chapter {ch}", "you": "you predicted", "ran": "the worker did", "placeholder": {
               "number": "a number", "order": "names in order, e.g. {names}", "keywords": "a short answer"},
           "done": "Done", "export": "Save the report (JSON and Markdown)", "saved": "saved {json} and {md}",
           "disagree": "the live run contradicts the bank ({bank}): you were judged against the run"},
    "zh": {"answer": "回答", "next": "下一题", "running": "正在真实 worker 上运行实验……", "left": "剩余 {s:.0f} 秒",
           "up": "时间到：现在作答算超时", "q": "第 {i} 题，共 {n} 题", "chapter": "第 {ch} 章", "you": "你的预测",
           "ran": "worker 的实际结果", "placeholder": {"number": "数字", "order": "按顺序写任务名，如 {names}",
                                                  "keywords": "简短回答"},
           "done": "完成", "export": "保存报告（JSON 和 Markdown）", "saved": "已保存 {json} 和 {md}",
           "disagree": "真实运行与题库答案（{bank}）不一致：按真实运行判定"},
}


def rich(text: str) -> str:
    """Bank text as HTML: escaped, with `inline code` shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


class DrillUI:
    def __init__(self, drill: Drill, report_to: str | Path = "drill-report.json"):
        self.drill, self.lang = drill, drill.lang
        self.t = TEXT.get(drill.lang, TEXT["en"])
        self.w = WORDS.get(drill.lang, WORDS["en"])
        self.report_to = Path(report_to)
        self.header = widgets.HTML()
        self.question = widgets.HTML()
        self.choice = widgets.RadioButtons(options=[], value=None, layout=widgets.Layout(width="auto"))
        self.typed = widgets.Text(layout=widgets.Layout(width="40em"))
        self.submit = widgets.Button(description=self.t["answer"], button_style="primary")
        self.forward = widgets.Button(description=self.t["next"], disabled=True)
        self.clock = widgets.IntProgress(min=0, max=int(drill.seconds_per_question), bar_style="info")
        self.clock_text = widgets.Label()
        self.message = widgets.HTML()
        self.result = widgets.HTML()
        self.save = widgets.Button(description=self.t["export"], layout=widgets.Layout(width="auto",
                                                                                        display="none"))
        self.submit.on_click(lambda _: self._submit())
        self.forward.on_click(lambda _: self.next())
        self.save.on_click(lambda _: self.export())
        self.input_box = widgets.Box()
        self.box = widgets.VBox([self.header, widgets.HBox([self.clock, self.clock_text]), self.question,
                                 self.input_box, widgets.HBox([self.submit, self.forward]), self.message,
                                 self.result, self.save])
        self._ticking: threading.Event | None = None
        self.next()

    # -- one question -----------------------------------------------------------------------------------
    def next(self) -> Question | None:
        self._stop_clock()
        q = self.drill.ask()
        self.message.value = self.result.value = ""
        self.forward.disabled = True
        if q is None:
            self._finish()
            return None
        n = len(self.drill.questions)
        link = lesson(q.chapter)
        where = self.t["chapter"].format(ch=q.chapter)
        where = f'<a href="{Path(link).name}" target="_blank">{where}</a>' if link else where
        self.header.value = f"<b>{self.t['q'].format(i=len(self.drill.outcomes) + 1, n=n)}</b> · {where}"
        self.question.value = f"<p style='font-size:1.1em'>{rich(q.text(self.lang))}</p>"
        if q.kind == "choice":
            self.choice.options = [(f"{letter}) {o}".replace("`", ""), letter)
                                   for letter, o in zip("abcdefghij", q.options(self.lang))]
            self.choice.value = None
            self.input_box.children = [self.choice]
        else:
            hint = self.t["placeholder"][q.kind].format(names=" ".join(q.choices))
            self.typed.value, self.typed.placeholder = "", hint
            self.input_box.children = [self.typed]
        self.submit.disabled = False
        self._start_clock()
        return q

    def answer(self, text: str | None):
        """Type `text` (a letter for a choice) and press Answer: what a scripted learner does."""
        if self.drill.current is not None and self.drill.current.kind == "choice":
            self.choice.value = text if text in [v for _, v in self.choice.options] else None
            self._submit(raw=text)
        else:
            self.typed.value = text or ""
            self._submit()
        return self.drill.outcomes[-1] if self.drill.current is None else None

    def _submit(self, raw: str | None = None):
        q = self.drill.current
        if q is None:
            return
        text = raw if raw is not None else (self.choice.value if q.kind == "choice" else self.typed.value)
        try:
            self.drill.read(text or "")
        except AnswerError as exc:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(exc), quote=False)}</span>"
            return
        self.message.value = f"<i>{self.t['running']}</i>"
        self.submit.disabled = True
        self._stop_clock()
        o = self.drill.answer(text)
        verdict = self.w["right"] if o.correct else (self.w["late"] if not o.in_time else self.w["wrong"])
        colour = "#1a7f37" if o.correct else "#b00"
        rows = [(self.t["you"], shown(o.predicted)), (self.t["ran"], shown(o.observed))]
        table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td><code>{html.escape(v)}"
                        f"</code></td></tr>" for k, v in rows)
        note = ""
        if o.error:
            note = f"<p>{html.escape(o.error)}</p>"
        elif not o.agrees_with_bank:
            note = f"<p>{html.escape(self.t['disagree'].format(bank=q.shown_answer(self.lang)))}</p>"
        why = "" if self.drill.mock else f"<p>{rich(q.explanation(self.lang))}</p>"
        self.message.value = ""
        self.result.value = (f"<p style='color:{colour};font-weight:bold'>{verdict} ({o.seconds:g} s; "
                             f"{o.experiment_s:g} s live)</p><table>{table}</table>{note}{why}")
        self.forward.disabled = False
        return o

    # -- the countdown ----------------------------------------------------------------------------------
    def _start_clock(self):
        stop = self._ticking = threading.Event()
        self._draw_clock()

        def tick():
            while not stop.wait(0.5):
                self._draw_clock()
                if self.drill.left_for_question() <= 0:
                    break

        threading.Thread(target=tick, daemon=True, name="coursekit-drill-clock").start()

    def _draw_clock(self):
        left = self.drill.left_for_question()
        self.clock.value = int(round(left))
        self.clock.bar_style = "info" if left > 10 else ("warning" if left > 0 else "danger")
        self.clock_text.value = self.t["left"].format(s=left) if left > 0 else self.t["up"]

    def _stop_clock(self):
        if self._ticking is not None:
            self._ticking.set()
            self._ticking = None

    # -- the end ----------------------------------------------------------------------------------------
    def _finish(self):
        self._stop_clock()
        self.drill.close()  # no worker outlives the drill
        right, asked = self.drill.score()
        self.header.value = f"<b>{self.t['done']}</b>"
        self.question.value = f"<h3>{self.w['score']}: {right}/{asked}</h3>"
        self.input_box.children = []
        self.submit.disabled = self.forward.disabled = True
        self.clock.value, self.clock_text.value = 0, ""
        weak = self.drill.weakest_chapters()
        links = ", ".join(f'<a href="{Path(lesson(ch)).name}" target="_blank">{ch}</a>' if lesson(ch)
                          else f"{ch} ({self.w['nolesson']})" for ch in weak)
        self.result.value = f"<p><b>{self.w['weak']}:</b> {links or self.w['none']}</p>"
        self.save.layout.display = ""

    def export(self) -> tuple[Path, Path]:
        json_path, md_path = export(self.drill, self.report_to)
        self.message.value = html.escape(self.t["saved"].format(json=json_path, md=md_path))
        return json_path, md_path

    def markdown(self) -> str:
        return as_markdown(self.drill)

    def _ipython_display_(self):
        display(self.box)


def drill_ui(lang: str = "en", count: int | None = 6, chapter: str | None = None, seconds: float = 60,
             minutes: float | None = None, mock: bool = False, ids: list[str] | None = None) -> DrillUI:
    """A drill for the notebook: `count` questions (weakest topics first), or a chapter's, or a mock interview
    (`mock=True`: 10 across chapters, 20 minutes, no hints); `ids` picks questions by id, in that order."""
    from . import bank, session

    if ids:
        by_id = {q.id: q for q in bank.load()}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise AnswerError(f"no drill questions {unknown}")
        questions = [by_id[i] for i in ids]
    else:
        questions = session.pick(chapter=chapter, count=count, mock=mock)
    if mock:
        minutes = minutes or session.MOCK_MINUTES
    return DrillUI(Drill(questions, lang=lang, seconds_per_question=seconds, minutes=minutes, mock=mock))
