"""Chapter 02: retries. Failures are deterministic (they depend on the attempt number, `self.request.retries`),
so every run of the lesson shows the same attempts; only the timing is measured."""
from . import lab_app, ran_here

app = lab_app(__name__)


class GatewayTimeout(ConnectionError):
    """A temporary failure: the same call may well work a moment later."""


class CardDeclined(ValueError):
    """A permanent failure: calling again gives the same answer."""


def flaky_call(attempt, failures=3):
    """Fails while `attempt` (the task's retries so far) is below `failures`, then answers."""
    if attempt < failures:
        raise ConnectionError(f"attempt {attempt + 1}: connection reset by peer")  # retries so far + 1
    return f"ok after {attempt} retries"


def gateway(order, attempt):
    """'declined-*' orders are always declined; 'flaky-*' orders time out on the first attempt only; 'down-*'
    orders time out every time (the gateway stays down)."""
    if order.startswith("declined"):
        raise CardDeclined(f"card declined for {order}")
    if (order.startswith("flaky") and attempt < 1) or order.startswith("down"):
        raise GatewayTimeout(f"gateway timed out for {order} (attempt {attempt + 1})")
    return f"charged {order}"


@app.task(bind=True, max_retries=2, default_retry_delay=0.5)
def shaky(self, failures):
    """Fails `failures` times, retrying itself 0.5 s later each time."""
    if self.request.retries < failures:
        raise self.retry(exc=ConnectionError(f"attempt {self.request.retries + 1} failed"))
    return f"ok after {self.request.retries} retries"


@app.task(bind=True, max_retries=2, default_retry_delay=0.5)
def doomed(self, pass_exc):
    """Always fails. With pass_exc the original error surfaces at the end; without, MaxRetriesExceededError."""
    try:
        raise ValueError("the upstream service said no")
    except ValueError as exc:
        raise self.retry(exc=exc) if pass_exc else self.retry()


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=1, retry_jitter=False, max_retries=3)
def backoff_exact(self):
    return flaky_call(self.request.retries, failures=2)


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=False, max_retries=1)
def storm_in_step(self, n):
    return flaky_call(self.request.retries, failures=1)


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=True, max_retries=1)
def storm_jittered(self, n):
    return flaky_call(self.request.retries, failures=1)


@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=3)
def trap(self):
    """autoretry_for with no backoff and no countdown: the retry waits default_retry_delay, 180 s."""
    return flaky_call(self.request.retries, failures=1)


@app.task(bind=True, max_retries=1, default_retry_delay=3)
def late_retry(self):
    """A retry 3 s later: longer than the lesson's 1 s visibility_timeout (no acks_late needed)."""
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("first attempt failed"))
    return ran_here()
