"""Chapter 05, a failure: a logging set-up that works in the shell but not in the worker. The module calls
`logging.basicConfig` with a JSON handler on stdout when it is imported, as many applications do, and leaves
Celery's `worker_hijack_root_logger` at its default (True)."""
import logging

from . import lab_app
from .jsonlog import stdout_handler
from .shop import declare

app = lab_app(__name__)
checkout = declare(app, __name__)

logging.basicConfig(level=logging.INFO, handlers=[stdout_handler()])  # does nothing when root has a handler already
