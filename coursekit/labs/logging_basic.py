"""Chapter 05, a failure: a logging set-up that works in the shell but not in the worker. The module calls
`logging.basicConfig` with a JSON handler on stdout when it is imported, as many applications do, and leaves
Celery's `worker_hijack_root_logger` at its default (True)."""
import logging
import sys

from . import lab_app
from .jsonlog import JsonFormatter
from .shop import declare

app = lab_app(__name__)
checkout = declare(app, __name__)

_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(JsonFormatter())
logging.basicConfig(level=logging.INFO, handlers=[_handler])  # does nothing when root has a handler already
