"""`python -m coursekit.checks.import_later FILE MODULE SECONDS`: load the learner's module as a worker would, with
the clock SECONDS ahead, and print the app's worker_state_db (JSON). A check compares it with the path of a load at
the real time: a state file's path that changes with the time of the import (a minute, a date) names another file at
a worker's start after a deploy, and the revokes kept in the old one are lost. Only the clock moves: time.time,
time_ns, localtime, gmtime, ctime, strftime, datetime.now/utcnow/today, date.today."""
import datetime
import json
import sys
import time
from pathlib import Path


def shift_clock(seconds: float) -> None:
    real_time, real_ns = time.time, time.time_ns
    real_local, real_gm, real_ctime, real_strftime = time.localtime, time.gmtime, time.ctime, time.strftime
    time.time = lambda: real_time() + seconds
    time.time_ns = lambda: real_ns() + int(seconds * 1e9)
    time.localtime = lambda secs=None: real_local(time.time() if secs is None else secs)
    time.gmtime = lambda secs=None: real_gm(time.time() if secs is None else secs)
    time.ctime = lambda secs=None: real_ctime(time.time() if secs is None else secs)
    time.strftime = lambda fmt, t=None: real_strftime(fmt, time.localtime() if t is None else t)
    ahead = datetime.timedelta(seconds=seconds)

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return super().now(tz) + ahead

        @classmethod
        def utcnow(cls):
            return super().utcnow() + ahead

        @classmethod
        def today(cls):
            return super().today() + ahead

    class LaterDate(datetime.date):
        @classmethod
        def today(cls):
            return datetime.date.fromtimestamp(time.time())

    datetime.datetime, datetime.date = Later, LaterDate


def main(file: str, name: str, seconds: str) -> None:
    shift_clock(float(seconds))
    from ..checking import app_in
    from ..learner import execute

    app = app_in(execute(Path(file), name))
    db = app.conf.worker_state_db if app is not None else None
    print(json.dumps({"worker_state_db": db if isinstance(db, str) else None}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
