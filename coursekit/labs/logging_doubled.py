"""Chapter 05, a failure: every line of `shop.payments` twice. The module gives that logger a handler of its own,
as a library's quick-start often says to, and the logger still passes each record on to the root logger, where
Celery's handler writes it again."""
import logging

from . import lab_app
from .shop import declare, payments

app = lab_app(__name__)
checkout = declare(app, __name__)

if not payments.handlers:  # imported twice in one process: still one handler
    _handler = logging.StreamHandler()  # stderr, in its own format
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    payments.addHandler(_handler)
