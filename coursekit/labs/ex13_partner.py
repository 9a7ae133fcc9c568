"""Exercise 13.ratelimit: a partner API that allows so many calls per second, counted across all callers.

`call_partner(contact_id)` is the call: one ledger entry with its time, the partner's view. `calls_per_second()` is
the partner's current quota, read from the course's Redis (operations may change it; the check does). Limiters keep
their shared state in `shared_redis()`, under names made by `key(...)` (inside the course namespace).
"""
from __future__ import annotations

from .. import namespace
from ..ledger import Ledger, client

QUOTA_KEY = "ex13-partner-quota"
DEFAULT_QUOTA = 5


def calls() -> Ledger:
    return Ledger("ex13_partner_calls")


def key(name: str) -> str:
    """A Redis key name in the course namespace."""
    return f"{namespace.prefix()}ex13:{name}"


def shared_redis():
    """A Redis client on the course broker, one per process (a pool child gets its own)."""
    return client()


def calls_per_second() -> int:
    raw = client().get(f"{namespace.prefix()}{QUOTA_KEY}")
    return int(raw) if raw is not None else DEFAULT_QUOTA


def call_partner(contact_id) -> str:
    calls().write(contact_id)
    return f"synced {contact_id}"


# -- what the check does ------------------------------------------------------------------------------------------
def set_quota(per_second: int) -> None:
    client().set(f"{namespace.prefix()}{QUOTA_KEY}", per_second, ex=600)
