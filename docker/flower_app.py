"""The Celery app Flower loads inside its container: the course broker, seen through the course's namespace."""
import os

from celery import Celery

PREFIX = os.environ.get("COURSEKIT_NAMESPACE", "celerylab:")
app = Celery("flower", broker=os.environ["COURSEKIT_BROKER_URL"])
app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
