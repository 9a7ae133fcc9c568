"""Chapter 13, part 5: what a worker lets in through its serializer.

`note` is an ordinary task. `Marker` is not a task at all: it is an object whose unpickling runs code. Pickle
rebuilds an object by calling whatever its `__reduce__` names, with the arguments it names; here that is
`exec` of two lines that append the pid of the process doing the unpickling to a file. A worker that accepts
pickle runs them as soon as it decodes a message carrying a `Marker`, whatever task the message names. The file
lives in a temporary folder that the lesson creates and removes: the payload writes nothing else.

`as_celery_reads` shows what Celery makes of a broker or result backend URL (user, password, TLS), connecting to
nothing.
"""
from __future__ import annotations

import logging
import ssl

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


class _Said(logging.Handler):
    """Keeps what kombu logs while it reads a URL."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def as_celery_reads(setting: str, url: str, tls: dict | None = None) -> dict:
    """What Celery makes of `url` given as `setting` ("broker_url", with `tls` as `broker_use_ssl`, or
    "result_backend"), without connecting anywhere: the URL as Celery logs it, its user, whether it has a password
    (never the password), the TLS options used, and what kombu logged or Celery raised."""
    from celery import Celery

    said = _Said()
    kombu_logger = logging.getLogger("kombu")
    kombu_logger.addHandler(said)
    try:
        if setting == "broker_url":
            reader = Celery("urls", broker=url, set_as_current=False)
            reader.conf.broker_use_ssl = tls
            conn = reader.connection_for_write()  # reads the URL; connects to nothing until first used
            user, password, options, shown = conn.userid, conn.password, conn.ssl, conn.as_uri()
        else:
            reader = Celery("urls", backend=url, set_as_current=False)
            try:
                backend = reader.backend  # the Redis backend checks its TLS options here
            except ValueError as exc:
                return {"setting": setting, "as Celery logs it": "(refused)", "user": "", "password": "", "TLS": "",
                        "said": f"ValueError: {str(exc).strip()}"}
            params = backend.connparams
            user, password, shown = params.get("username"), params.get("password"), backend.as_uri()
            options = {"ssl_cert_reqs": ssl.VerifyMode(params["ssl_cert_reqs"])} if "ssl_cert_reqs" in params else None
    finally:
        kombu_logger.removeHandler(said)
    return {"setting": setting, "as Celery logs it": shown, "user": user or "default",
            "password": "yes" if password else "no",
            "TLS": f"yes, ssl_cert_reqs={options['ssl_cert_reqs'].name}" if options else "no",
            "said": " ".join(said.lines) or "-"}
