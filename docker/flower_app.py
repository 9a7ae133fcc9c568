"""The Celery app Flower loads inside its container: the course broker, seen through the course's namespace.

The container has no coursekit, so this cannot import `coursekit.flower:app` (what `coursekit flower` loads);
it repeats the one setting Flower needs from it: the prefix kombu puts on keys and pidbox/celeryev channels."""
import os

from celery import Celery

PREFIX = os.environ.get("COURSEKIT_NAMESPACE", "celerylab:")
app = Celery("flower", broker=os.environ["COURSEKIT_BROKER_URL"])
app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
