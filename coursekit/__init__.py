"""coursekit: the helper package of Celery Lab. In a notebook: `import coursekit as ck`."""
from .app import make_app
from .broker import Broker, current, down, rabbitmq, up
from .results import get
from .errors import BrokerError, CourseError, ResultError, WorkerError
from .worker import Worker, live_workers, start_all, stop_all
from .beat import Beat
from .private import PrivateRedis
from .flower import Flower
from .ledger import Ledger

# Imported on first use (PEP 562): they bring pandas, matplotlib and ipywidgets, and every worker imports
# coursekit for its lab's app; loading them there would cost each worker start about 0.7 s of CPU.
_LAZY = {"workspace": "exercise", "live": "dashboard", "Recording": "observe", "load_recording": "observe",
         "record": "observe"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'coursekit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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


__all__ = ["Beat", "workspace", "live", "Recording", "load_recording", "record", "PrivateRedis", "Flower", "Ledger", "checkup", "reset", "Broker", "BrokerError", "CourseError", "ResultError", "Worker", "WorkerError", "current", "down", "get",
           "live_workers", "make_app", "rabbitmq", "start_all", "stop_all", "up"]
