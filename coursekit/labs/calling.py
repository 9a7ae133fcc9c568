"""Chapter 01: calling tasks. Each task reports where and when it ran, so the lesson measures rather than asserts."""
from ..app import make_app
from . import lab_app, ran_here

app = lab_app(__name__)


@app.task
def add(x, y):
    return x + y


@app.task
def stamp():
    """When and in which process the task body ran."""
    return ran_here()


@app.task
def divide(x, y):
    return x / y


def add_on(broker_url, **settings):
    """The same `add` task, sent through a new app on another broker (the outage experiment's private one).
    That app has no result backend, so a dead broker fails only at publishing, which is what we measure."""
    other = make_app("outage", broker_url=broker_url, results=False, **settings)
    return other.task(name=add.name)(add.run)


@app.task(bind=True)
def whereabouts(self):
    """Where this run happened: the process, and whether Celery ran it eagerly (apply) or on a worker."""
    return ran_here() | {"eager": bool(self.request.is_eager), "worker": self.request.hostname}
