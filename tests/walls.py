"""The lessons run as a learner of a team Redis, inside her ACL walls (coursekit/team.py), so that each run also
proves that the lesson touches only her namespace: Redis refuses her nothing, and every key left is hers.

One team Redis per test process (a session fixture), started in the suite's state folder so that the leak check
knows it, with one learner named after the process: two processes' lessons never share a namespace, on that Redis
or on the machine's RabbitMQ (lesson 04)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from coursekit import namespace, rabbit, team


def acl_log(group: team.Team, user: str) -> list[dict]:
    """What Redis refused `user`, apart from redis-py's CLIENT SETINFO on connecting (Redis 6.2 does not know
    it, redis-py ignores the refusal)."""
    with redis.Redis.from_url(group.admin_url) as admin:
        entries = admin.execute_command("ACL", "LOG", "1000")  # ACL LOG alone returns the last 10 only
    out = []
    for entry in entries:
        fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
        fields = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                  for k, v in fields.items()}
        if fields.get("username") == user and fields.get("object") != "client":
            out.append(fields)
    return out


@dataclass
class Walls:
    group: team.Team
    learner: str

    def environment(self) -> dict:
        """What her set-up line sets (None: unset): the learner, and her URL on the team Redis."""
        return {"COURSEKIT_NAMESPACE": None, "COURSEKIT_LEARNER": self.learner,
                "COURSEKIT_BROKER_URL": self.group.url_of(self.learner)}

    def enter(self, monkeypatch) -> None:
        """This test's kernels and workers work for the learner, on the team Redis, as her set-up line says."""
        for name, value in self.environment().items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    def clear(self) -> None:
        """Delete her keys and forget what Redis refused before, so that `keys()` and `breaches()` after a lesson
        speak of that lesson alone."""
        with redis.Redis.from_url(self.group.admin_url) as admin:
            for key in admin.scan_iter(match=namespace.of_learner(self.learner) + "*", count=1000):
                admin.delete(key)
            admin.execute_command("ACL", "LOG", "RESET")

    def keys(self) -> int:
        """How many keys she has on the team Redis: none after a lesson means it ran on another broker."""
        with redis.Redis.from_url(self.group.admin_url) as admin:
            return sum(1 for _ in admin.scan_iter(match=namespace.of_learner(self.learner) + "*", count=1000))

    def breaches(self) -> list[str]:
        """What Redis refused her, and any key left outside her namespace."""
        own = namespace.of_learner(self.learner).encode()
        with redis.Redis.from_url(self.group.admin_url) as admin:
            foreign = [k for k in admin.scan_iter(count=1000) if not k.startswith(own)]
        return [f"refused: {entry}" for entry in acl_log(self.group, self.learner)] + \
            [f"key outside {own.decode()}: {key!r}" for key in foreign]


@pytest.fixture(scope="session")
def walls():
    folder = Path(tempfile.mkdtemp(dir=os.environ["COURSEKIT_STATE_DIR"], prefix="walls-"))
    learner = f"l{os.getpid()}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("COURSEKIT_STATE_DIR", str(folder))
            group = team.up([learner])
        yield Walls(group, learner)
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("COURSEKIT_STATE_DIR", str(folder))
            team.down()
        url, _ = rabbit.find()
        if url:
            try:
                rabbit.drop_namespace(url, namespace.of_learner(learner))
            except Exception:  # RabbitMQ went away: its queues expire by themselves
                pass
