"""Chapter 05: Celery's own logging set-up, untouched (also run with `-f FILE` and with other
`worker_redirect_stdouts*` settings, which a `Worker` passes through `logfile=` and `config=`)."""
from . import lab_app
from .shop import declare

app = lab_app(__name__)
checkout = declare(app, __name__)
