"""Chapter 00: the first tasks."""
import os
import time

from . import lab_app, ran_here

app = lab_app(__name__)


@app.task
def add(x, y):
    return x + y


@app.task
def where_am_i():
    """Which process ran this: the pid shows that a worker's pool child, not the notebook, did the work."""
    return ran_here()


@app.task
def noop():
    return None


@app.task
def setting(name):
    """The value of one Celery setting as the worker sees it: shows where a worker's configuration comes from."""
    return app.conf.get(name)


@app.task
def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


@app.task
def book(ledger, key):
    """Write one side effect for `key` in the ledger `ledger`, from the pool process that runs this."""
    from ..ledger import Ledger

    Ledger(ledger).write(key)
    return key
