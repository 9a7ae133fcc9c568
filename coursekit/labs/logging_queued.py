"""Chapter 05, a failure: log lines missing from the pool children. The module ships `shop.payments` records
through a queue (`QueueHandler`) to a `QueueListener` thread it starts when it is imported, as a set-up that must
not block on a slow log shipper does. The worker imports the module in its main process and then forks the pool:
a child gets a copy of the queue but not the listener thread, so what the child logs waits in its copy forever.

`worker_process_init` fires in each child once it is forked: `listen_in_each_child()` starts a listener there (the
fix), when the worker's config sets `shop_listen_in_child` (any Celery app accepts extra keys)."""
import queue
from logging.handlers import QueueHandler, QueueListener

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from . import lab_app
from .jsonlog import StampTask, stdout_handler
from .shop import declare, payments

app = lab_app(__name__)
checkout = declare(app, __name__)

records: queue.Queue = queue.Queue()
_out = stdout_handler()
listener = QueueListener(records, _out)
if not any(isinstance(h, QueueHandler) for h in payments.handlers):
    _queued = QueueHandler(records)
    _queued.addFilter(StampTask())  # the listener formats in its own thread, where no task runs
    payments.addHandler(_queued)
    payments.propagate = False  # shipped through the queue only
    listener.start()


@worker_ready.connect
def say_ready(**_):
    payments.info("main process ready: the listener ships this line")


@worker_process_init.connect
def listen_in_each_child(**_):
    """The fix, when the worker's config sets `shop_listen_in_child` (a Celery app keeps keys it does not know): a
    queue and a listener of the child's own. Not the copied queue: its lock state was copied mid-wait from the
    parent's listener thread, and the first record put in it would wake that thread, which is not here."""
    global records, listener
    if app.conf.get("shop_listen_in_child"):
        records = queue.Queue()
        for handler in payments.handlers:
            if isinstance(handler, QueueHandler):
                handler.queue = records
        listener = QueueListener(records, _out)
        listener.start()


@worker_process_shutdown.connect
def flush_in_each_child(**_):
    """A child's listener is a daemon thread: stop it (it writes what its queue still holds) before the child exits."""
    if app.conf.get("shop_listen_in_child"):
        listener.stop()
