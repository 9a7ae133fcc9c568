"""Every exercise of the course, by id. In a notebook: `from coursekit.checks import ch01; ch01.countdown.check()`."""
from __future__ import annotations

from ..exercise import Exercise


def all_exercises() -> dict[str, Exercise]:
    from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12, ch13

    found = {}
    for mod in (ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12, ch13):
        for value in vars(mod).values():
            if isinstance(value, Exercise):
                found[value.id] = value
    return found
