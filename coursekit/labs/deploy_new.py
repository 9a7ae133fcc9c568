"""Chapter 13, part 2: the task module of today's release (version 2): each task learnt where to send its note, and
each takes the change its own way. Its tasks belong to the application lab's app, whose workers import this module
(`include`); web servers not yet deployed still send the messages of version 1 (`deploy_old`).

- welcome: a new REQUIRED argument. A message of version 1 lacks it: TypeError, on the worker.
- receipt: the new argument has a default, so a message without it still fits.
- remind: takes `**options` and picks what it knows from them: it fits old messages, and messages of a later
  version that send arguments it does not know yet.
- invoice: the breaking change goes under a new name, invoice_v2; the old name stays, with its old signature,
  until no message of version 1 is left.
"""
from __future__ import annotations

from .application import app


@app.task(name="deploy.welcome")
def welcome(user_id, channel):
    return f"welcome {user_id} by {channel}"


@app.task(name="deploy.receipt")
def receipt(order_id, channel="email"):
    return f"receipt {order_id} by {channel}"


@app.task(name="deploy.remind")
def remind(user_id, **options):
    return f"remind {user_id} by {options.get('channel', 'email')}"


@app.task(name="deploy.invoice")
def invoice(order_id):
    return invoice_v2(order_id, "EUR")  # a plain call: the old message is handled here, with the old meaning


@app.task(name="deploy.invoice_v2")
def invoice_v2(order_id, currency):
    return f"invoice {order_id} in {currency}"
