"""Exercise 13.deploy: a notification task whose signature changed in a deploy.

`deliver(user_id, channel)` is the side effect: one entry in the ledger `ex13_deliveries`. The old code sent every
notification by e-mail (`notify(user_id)`); the new code lets the caller choose the channel.
"""
from __future__ import annotations

from ..ledger import Ledger

CHANNELS = ("email", "sms", "push")
OLD_CHANNEL = "email"
"""What the old `notify(user_id)` did: every message, by e-mail."""


def deliveries() -> Ledger:
    return Ledger("ex13_deliveries")


def deliver(user_id, channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"no channel {channel!r}: one of {', '.join(CHANNELS)}")
    deliveries().write(user_id, channel=channel)
    return f"{channel} to user {user_id}"
