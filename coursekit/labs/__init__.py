"""Celery apps and tasks the lessons run. Workers import these modules with `celery -A coursekit.labs.NAME`."""
