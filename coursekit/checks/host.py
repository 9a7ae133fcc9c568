"""What a check's worker runs (`celery -A coursekit.checks.host`) when the learner's module holds the tasks: the
module loaded the way the check loads it (`learner.execute`, `____` harmless), and its Celery app served."""
import os
from pathlib import Path

from ..checking import FILE_ENV, NAME_ENV, app_in
from ..learner import execute

module = execute(Path(os.environ[FILE_ENV]), os.environ[NAME_ENV])
app = app_in(module)
if app is None:
    raise RuntimeError(f"{Path(os.environ[FILE_ENV]).name} defines no Celery app")
