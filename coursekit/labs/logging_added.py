"""Chapter 05, way 2: keep Celery's set-up and add to it. `after_setup_logger` gets the root logger once Celery has
given it its stderr handler; `after_setup_task_logger` gets the logger task loggers hang under (`celery.task`),
which does not pass records on to the root: a handler for task lines goes there too."""
from celery.signals import after_setup_logger, after_setup_task_logger

from . import lab_app
from .jsonlog import stdout_handler
from .shop import declare

app = lab_app(__name__)
checkout = declare(app, __name__)


@after_setup_logger.connect
def json_on_root(logger=None, **_):
    logger.addHandler(stdout_handler())


@after_setup_task_logger.connect
def json_on_task_logger(logger=None, **_):
    logger.addHandler(stdout_handler())
