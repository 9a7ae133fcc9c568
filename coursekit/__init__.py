"""coursekit: the helper package of Celery Lab. In a notebook: `import coursekit as ck`."""
from .app import make_app
from .broker import Broker, current, down, rabbitmq, up
from .results import get
from .exercise import workspace
from .errors import BrokerError, CourseError, ResultError, WorkerError
from .worker import Worker, live_workers, start_all, stop_all

from .dashboard import live
from .observe import Recording, load_recording, record
from .private import PrivateRedis
from .flower import Flower

__version__ = "0.1.0"


def reset() -> int:
    """Delete the course's keys (and only those) on the current broker; returns how many."""
    from . import namespace

    return namespace.reset(current().url)


def checkup() -> None:
    """Print `coursekit doctor`'s report. It returns nothing, so a notebook cell shows the report alone."""
    from . import doctor

    text, _ = doctor.report(doctor.diagnose())
    print(text)

__all__ = ["workspace", "live", "Recording", "load_recording", "record", "PrivateRedis", "Flower", "checkup", "reset", "Broker", "BrokerError", "CourseError", "ResultError", "Worker", "WorkerError", "current", "down", "get",
           "live_workers", "make_app", "rabbitmq", "start_all", "stop_all", "up"]
