"""Exercise 13.revoke: scheduled posts, one of them cancelled, and a restart of every worker before they are due.

`publish_post(post_id)` is the side effect: one entry in the ledger `ex13_published`.
"""
from __future__ import annotations

from ..ledger import Ledger


def published() -> Ledger:
    return Ledger("ex13_published")


def publish_post(post_id) -> str:
    published().write(post_id)
    return f"published {post_id}"
