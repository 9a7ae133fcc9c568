"""Chapter 13, part 5: what a worker lets in through its serializer.

`note` is an ordinary task. `Marker` is not a task at all: it is an object whose unpickling runs code. Pickle
rebuilds an object by calling whatever its `__reduce__` names, with the arguments it names; here that is
`exec` of two lines that append the pid of the process doing the unpickling to a file. A worker that accepts
pickle runs them as soon as it decodes a message carrying a `Marker`, whatever task the message names. The file
lives in a temporary folder that the lesson creates and removes: the payload writes nothing else.
"""
from __future__ import annotations

from . import lab_app

app = lab_app(__name__)

PICKLE_QUEUE = "app_security.pickle"
"""The queue of the worker that accepts pickle: the lesson's default worker never sees its messages."""


@app.task
def note(text):
    return f"noted: {text}"


class Marker:
    """A pickle payload: unpickling it appends the unpickling process's pid to `path` (and does nothing else)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        code = f"import os\nwith open({self.path!r}, 'a') as f: f.write(f'{{os.getpid()}}\\n')"
        return exec, (code,)

    def __repr__(self):
        return f"Marker({self.path!r})"


def pids_in(path) -> list[int]:
    """The pids the payload wrote to `path`, in the order they wrote them (none when the file is absent)."""
    try:
        with open(path) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
