"""Chapter 05, way 3: `worker_hijack_root_logger=False`, and the module configures logging itself when it is
imported, as an application that already has a logging set-up would: JSON lines on stdout."""
import logging

from . import lab_app
from .jsonlog import stdout_handler
from .shop import declare

app = lab_app(__name__, worker_hijack_root_logger=False)
checkout = declare(app, __name__)

root = logging.getLogger()
if not any(getattr(h, "course_json", False) for h in root.handlers):  # imported twice: one handler still
    handler = stdout_handler()
    handler.course_json = True
    root.addHandler(handler)
    root.setLevel(logging.INFO)
