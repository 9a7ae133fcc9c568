"""Chapter 13, part 2: the task module as released yesterday (version 1), which the web servers not yet deployed
still run. Its twin `deploy_new` is today's, which the workers run.

Both send to the application lab's queue, and name their tasks explicitly ("deploy.welcome", ...), as a project
keeps its task names stable across releases: a message names its task by that string, not by the module it came
from. This app is the old code's own; the workers never import this module.
"""
from __future__ import annotations

from ..app import make_app

app = make_app("application")  # the same default queue as coursekit.labs.application


@app.task(name="deploy.welcome")
def welcome(user_id):
    return f"welcome {user_id}"


@app.task(name="deploy.receipt")
def receipt(order_id):
    return f"receipt {order_id}"


@app.task(name="deploy.remind")
def remind(user_id):
    return f"remind {user_id}"


@app.task(name="deploy.invoice")
def invoice(order_id):
    return f"invoice {order_id}"
