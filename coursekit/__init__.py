"""coursekit: the helper package of Celery Lab. In a notebook: `import coursekit as ck`."""
from .app import make_app
from .broker import Broker, current, down, rabbitmq, up
from .results import get
from .errors import BrokerError, CourseError, ResultError, WorkerError
from .worker import Worker, live_workers, start_all, stop_all

__version__ = "0.1.0"
__all__ = ["Broker", "BrokerError", "CourseError", "ResultError", "Worker", "WorkerError", "current", "down", "get",
           "live_workers", "make_app", "rabbitmq", "start_all", "stop_all", "up"]
