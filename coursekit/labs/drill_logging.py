"""Chapter 14's logging experiment: a worker module that takes logging over with a `setup_logging` receiver, and
also asks to be told after Celery set its logger up. Does the second ever happen?"""
import logging
import sys

from celery.signals import after_setup_logger, setup_logging

from .drill import app  # noqa: F401  (the worker's app: the drill's own tasks)

SETUP_MARK = "drill: setup_logging receiver ran"
AFTER_MARK = "drill: after_setup_logger fired"


@setup_logging.connect(weak=False)
def take_over(**_):
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, force=True)
    print(SETUP_MARK, flush=True)


@after_setup_logger.connect(weak=False)
def told_after(**_):
    print(AFTER_MARK, flush=True)
