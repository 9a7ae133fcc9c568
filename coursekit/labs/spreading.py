"""Chapter 03: how tasks spread over workers. Every task sleeps (IO-bound work: the process waits, the CPU is
free) and reports which process ran it, so the lesson reads the split, the concurrency and the waits behind a
long task from the runs themselves."""
import time

from . import lab_app, ran_here

app = lab_app(__name__)


def queue(purpose: str) -> str:
    """A queue of this lab's own, named after its default queue: 'spreading.slow' for 'slow'."""
    return f"{app.conf.task_default_queue}.{purpose}"


SLOW = queue("slow")
"""Where `task_routes` sends `crunch`: only a worker started with `-Q spreading.slow` reads it."""
app.conf.task_routes = {f"{__name__}.crunch": {"queue": SLOW}}


@app.task
def nap(seconds):
    time.sleep(seconds)
    return ran_here()


@app.task
def crunch(seconds):
    """Slow work. Nothing in its call says where it goes: the app's `task_routes` sends it to SLOW."""
    time.sleep(seconds)
    return ran_here()
