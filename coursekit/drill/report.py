"""A drill's report: the score, each question with the prediction against what the worker did, the weakest
chapters with their lessons; as a dict (JSON) and as Markdown, in English or Chinese."""
from __future__ import annotations

import json
import time
from pathlib import Path

from . import bank

WORDS = {
    "en": {"title": "Celery interview drill", "mock": "Celery mock interview", "score": "Score",
           "q": "Question", "you": "You answered", "ran": "The live run observed", "right": "right", "wrong": "wrong",
           "late": "out of time", "why": "Why", "weak": "Weakest chapters: reread", "none": "none: every answer right",
           "answer": "Answer", "nolesson": "no lesson yet"},
    "zh": {"title": "Celery 面试演练", "mock": "Celery 模拟面试", "score": "得分", "q": "问题", "you": "你的回答",
           "ran": "真实运行观察到", "right": "正确", "wrong": "错误", "late": "超时", "why": "解释",
           "weak": "最薄弱的章节：请重读", "none": "无：全部答对", "answer": "答案", "nolesson": "暂无课程"},
}


def lesson(chapter: str) -> str:
    """The lesson notebook of `chapter`, as a path from the repository root, or '' when it has none yet."""
    from ..course import chapters

    found = [ch for ch in chapters() if ch.id == chapter and ch.path("notebooks").exists()]
    return f"notebooks/{found[0].stem}.ipynb" if found else ""


def as_dict(drill) -> dict:
    by_id = {q.id: q for q in drill.questions}
    right, asked = drill.score()
    return {
        "format": 1, "mode": "mock" if drill.mock else "drill", "lang": drill.lang,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "score": {"right": right, "asked": asked, "of": len(drill.questions)},
        "minutes_used": round((time.monotonic() - drill.started) / 60, 1),
        "questions": [
            {**o.as_dict(), "question": by_id[o.id].text(drill.lang), "answer": by_id[o.id].shown_answer(drill.lang),
             "explanation": by_id[o.id].explanation(drill.lang), "lesson": lesson(o.chapter)}
            for o in drill.outcomes],
        "weakest": [{"chapter": ch, "lesson": lesson(ch)} for ch in drill.weakest_chapters()],
    }


def shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " > ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def as_markdown(drill) -> str:
    data, w = as_dict(drill), WORDS.get(drill.lang, WORDS["en"])
    score = data["score"]
    lines = [f"# {w['mock'] if drill.mock else w['title']}", "",
             f"**{w['score']}: {score['right']}/{score['asked']}** ({data['minutes_used']} min, {data['at']})", ""]
    for i, q in enumerate(data["questions"], 1):
        verdict = w["right"] if q["correct"] else (w["late"] if not q["in_time"] else w["wrong"])
        lines += [f"## {i}. [{q['chapter']}] {q['question']}", "",
                  f"- {w['you']}: `{shown(q['predicted'])}` ({verdict}, {q['seconds']} s)",
                  f"- {w['ran']}: `{shown(q['observed'])}`", f"- {w['answer']}: {q['answer']}",
                  f"- {w['why']}: {q['explanation']}", ""]
    weak = data["weakest"]
    lines.append(f"**{w['weak']}:** " + (", ".join(
        f"[{x['chapter']}]({x['lesson']})" if x["lesson"] else f"{x['chapter']} ({w['nolesson']})" for x in weak)
        if weak else w["none"]))
    return "\n".join(lines) + "\n"


def export(drill, path: str | Path) -> tuple[Path, Path]:
    """Write the report as JSON at `path` and as Markdown beside it (.md)."""
    path = Path(path)
    path.write_text(json.dumps(as_dict(drill), indent=2, ensure_ascii=False), encoding="utf-8")
    md = path.with_suffix(".md")
    md.write_text(as_markdown(drill), encoding="utf-8")
    return path, md


__all__ = ["as_dict", "as_markdown", "export", "lesson", "bank"]
