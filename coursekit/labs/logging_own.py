"""Chapter 05, way 1: a `setup_logging` receiver. Celery then configures nothing at all, and this module's own set-up
is the whole of it: JSON lines on stdout. `after_setup_logger` and `after_setup_task_logger` receivers are connected
too, to show that they never fire (each would say so on stderr)."""
import logging
import sys

from celery.signals import after_setup_logger, after_setup_task_logger, setup_logging

from . import lab_app
from .jsonlog import stdout_handler
from .shop import declare

app = lab_app(__name__)
checkout = declare(app, __name__)


@setup_logging.connect
def own_logging(loglevel=None, **_):
    root = logging.getLogger()
    root.handlers = [stdout_handler()]
    root.setLevel(loglevel or logging.INFO)


@after_setup_logger.connect
def said_after_setup_logger(**_):
    sys.__stderr__.write("SIGNAL after_setup_logger fired\n")


@after_setup_task_logger.connect
def said_after_setup_task_logger(**_):
    sys.__stderr__.write("SIGNAL after_setup_task_logger fired\n")
