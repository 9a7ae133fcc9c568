"""`coursekit drill` in a terminal: plain prompts, a countdown per question (and optionally for the whole drill),
the live run after each answer. Ctrl-C (or the end of input) ends it with the score so far; every worker it
started is stopped on the way out."""
from __future__ import annotations

from collections.abc import Callable

from .bank import AnswerError, Question
from .report import WORDS, lesson, shown
from .session import Drill

SAY = {
    "en": {"intro": "{n} questions, {s:.0f} s each{total}. Answer, then a real worker settles it. Ctrl-C stops.",
           "total": ", {m:g} minutes in all", "prompt": "your answer ({how}, {left:.0f} s left): ",
           "running": "running the experiment on a real worker ...", "right": "RIGHT", "wrong": "WRONG",
           "late": "OUT OF TIME", "you": "you", "ran": "observed", "disagree":
           "the live run disagrees with the bank ({bank}); you were judged against the run",
           "error": "the experiment could not run: {error}", "stopped": "stopped.", "score": "score: {r}/{n}",
           "weak": "weakest chapters, reread:", "timeup": "time is up.", "report": "report: {json} and {md}",
           "nolesson": "no lesson yet"},
    "zh": {"intro": "共 {n} 题，每题 {s:.0f} 秒{total}。先作答，再由真实 worker 验证。Ctrl-C 结束。",
           "total": "，总共 {m:g} 分钟", "prompt": "你的答案（{how}，剩余 {left:.0f} 秒）：",
           "running": "正在真实 worker 上运行实验……", "right": "正确", "wrong": "错误", "late": "超时",
           "you": "你的答案", "ran": "观察到", "disagree": "真实运行与题库答案（{bank}）不一致；按真实运行判定",
           "error": "实验无法运行：{error}", "stopped": "已停止。", "score": "得分：{r}/{n}",
           "weak": "最薄弱的章节，请重读：", "timeup": "时间到。", "report": "报告：{json} 和 {md}",
           "nolesson": "暂无课程"},
}


def show_question(q: Question, number: int, total: int, lang: str, out: Callable[[str], None]) -> None:
    out("")
    out(f"[{number}/{total}] ({q.chapter}) {q.text(lang)}")
    for letter, option in zip("abcdefghij", q.options(lang) if q.kind == "choice" else ()):
        out(f"  {letter}) {option}")
    if q.kind == "order":
        out("  " + " ".join(q.choices))


def run(drill: Drill, read: Callable[[str], str] = input, out: Callable[[str], None] = print,
        report_to: str | None = None) -> tuple[int, int]:
    """Drive `drill` with `read` (input) and `out` (print); returns (right, asked). Always closes the drill."""
    say = SAY.get(drill.lang, SAY["en"])
    total = say["total"].format(m=drill.minutes) if drill.minutes else ""
    out(say["intro"].format(n=len(drill.questions), s=drill.seconds_per_question, total=total))
    try:
        while (q := drill.ask()) is not None:
            show_question(q, len(drill.outcomes) + 1, len(drill.questions), drill.lang, out)
            while True:
                typed = read(say["prompt"].format(how=q.how_to(drill.lang), left=drill.left_for_question()))
                try:
                    drill.read(typed)
                    break
                except AnswerError as exc:
                    out(f"  {exc}")
            out(say["running"])
            o = drill.answer(typed)
            verdict = say["right"] if o.correct else (say["late"] if not o.in_time else say["wrong"])
            out(f"{verdict}: {say['you']} {shown(o.predicted)} | {say['ran']} {shown(o.observed)} "
                f"({o.experiment_s:g} s)")
            if o.error:
                out("  " + say["error"].format(error=o.error))
            elif not o.agrees_with_bank:
                out("  " + say["disagree"].format(bank=q.shown_answer(drill.lang)))
            if not drill.mock:  # a mock interview gives no hints: explanations wait for the report
                out("  " + q.explanation(drill.lang))
        if drill.remaining_s() == 0.0:
            out(say["timeup"])
    except (KeyboardInterrupt, EOFError):
        out("")
        out(say["stopped"])
    finally:
        drill.close()
    right, asked = drill.score()
    out(say["score"].format(r=right, n=asked))
    weak = drill.weakest_chapters()
    if weak:
        out(say["weak"])
        for ch in weak:
            out(f"  {ch}  {lesson(ch) or say['nolesson']}")
    if report_to:
        from .report import export

        json_path, md_path = export(drill, report_to)
        out(say["report"].format(json=json_path, md=md_path))
    return right, asked


__all__ = ["run", "WORDS"]
