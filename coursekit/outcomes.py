"""What a check concludes, as learntools does it: every outcome other than a pass is an exception (`NotAttempted`,
`Incorrect`, `Uncheckable`) carrying its message and a fix, and `Exercise.verdict` turns each into one `Verdict`,
the card a learner sees (HTML in a notebook, plain text in a terminal). Hints and solutions are `Text`."""
from __future__ import annotations

import html
from dataclasses import dataclass

COLOURS = {"passed": "#1a7f37", "incorrect": "#cf222e", "not attempted": "#6e7781", "uncheckable": "#9a6700"}


class Outcome(Exception):
    """A verdict other than "passed": the message says what happened, `fix` what to do about it."""

    status = ""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix


class NotAttempted(Outcome):
    status = "not attempted"


class Incorrect(Outcome):
    status = "incorrect"


class Uncheckable(Outcome):
    status = "uncheckable"


@dataclass
class Verdict:
    exercise: str
    status: str
    message: str
    observed: list[str]
    seconds: float
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __repr__(self) -> str:
        lines = [f"[{self.status.upper()}] {self.exercise}: {self.message}"]
        lines += [f"  fix: {self.fix}"] if self.fix else []
        lines += [f"  observed: {o}" for o in self.observed]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.status, "#6e7781")
        items = "".join(f"<li><code>{html.escape(o)}</code></li>" for o in self.observed)
        return (f'<div style="border-left:6px solid {colour};padding:6px 12px;margin:4px 0">'
                f'<b style="color:{colour}">{html.escape(self.status.capitalize())}</b> · '
                f'{html.escape(self.exercise)} ({self.seconds:.1f} s)<br>{html.escape(self.message)}'
                f'{"<br><i>Fix:</i> " + html.escape(self.fix) if self.fix else ""}'
                f'{"<ul style=margin:4px>" + items + "</ul>" if items else ""}</div>')


@dataclass
class Text:
    """A hint or a solution: Markdown in a notebook, plain text in a terminal."""
    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text
