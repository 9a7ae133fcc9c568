"""Chapter 13, part 2: the task module as deployed yesterday (version 1). Its twin `deploy_new` is today's.

Both share one app name, so one queue, and name their tasks explicitly ("deploy.welcome", ...), as a project keeps
its task names stable across releases: a message names its task by that string, not by the module it came from.
"""
from __future__ import annotations

from ..app import make_app

app = make_app("deploy")


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
