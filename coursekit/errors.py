"""One exception for every problem a learner can fix, shown as a short message that names the fix.

In a notebook IPython calls `_render_traceback_`, so the learner reads the message, not a traceback.
The CLI prints the same text and exits non-zero.
"""
from __future__ import annotations


class CourseError(Exception):
    """A problem with a known fix. `problem` says what went wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str = "", details: str = ""):
        self.problem = problem
        self.fix = fix
        self.details = details
        super().__init__(self.text())

    def text(self) -> str:
        lines = [f"coursekit: {self.problem}"]
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        if self.details:
            lines.append(self.details.rstrip())
        return "\n".join(lines)

    def _render_traceback_(self) -> list[str]:
        return self.text().splitlines()


class BrokerError(CourseError):
    """No usable broker, or the one named does not answer."""


class WorkerError(CourseError):
    """A worker would not start, or died."""


class ResultError(CourseError):
    """A result did not come, and coursekit can tell why."""
