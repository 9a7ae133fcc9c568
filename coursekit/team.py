"""A shared broker for a group: one Redis, and one Redis ACL user per learner that may touch only the keys and
pub/sub channels of that learner's namespace ('celerylab:ana:'). The walls are the server's, not a convention:
a learner's credentials get NOPERM on anybody else's data.

`coursekit team up` starts the group's redis-server (state in team.json, `coursekit team down` stops it) or
configures one given with `--redis`, and prints each learner's one-line set-up.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

from . import embedded, namespace, state
from .probe import safe
from .defaults import DEFAULTS
from .errors import BrokerError, CourseError

STATE_FILE = "team.json"
FACILITATOR = "facilitator"
RESERVED = {"default", FACILITATOR}
"""ACL user names that are not learners: Redis's own admin user and the facilitator's."""

DB = 0
"""Learners' URLs name db 0. kombu puts the db in pub/sub channel names ('/0.celery.pidbox'), so the channel
rules below name it too, and learners may not SELECT another db."""

LEARNER_COMMANDS = (
    # connecting
    "+ping", "+echo", "+auth", "+hello", "+client|setname", "+client|getname", "+client|id", "+time",
    # kombu's queues (lists, priority lists), unacked hash and index, bindings (sets), restore lock; results
    "+get", "+set", "+setex", "+psetex", "+setnx", "+getdel", "+mget", "+mset", "+del", "+unlink", "+exists",
    "+expire", "+pexpire", "+expireat", "+ttl", "+pttl", "+persist", "+type", "+incr", "+incrby", "+decr",
    "+decrby", "+lpush", "+rpush", "+lpop", "+rpop", "+brpop", "+blpop", "+llen", "+lrange", "+lrem", "+ltrim",
    "+lindex", "+lset", "+hset", "+hsetnx", "+hmset", "+hget", "+hmget", "+hdel", "+hgetall", "+hlen", "+hkeys",
    "+hvals", "+hexists", "+hincrby", "+hscan", "+sadd", "+srem", "+smembers", "+scard", "+sismember", "+sscan",
    "+zadd", "+zrem", "+zrange", "+zrangebyscore", "+zrevrange", "+zrevrangebyscore", "+zremrangebyscore",
    "+zcard", "+zscore", "+zcount",  # zcount: a chord's part-return script counts its header's results
    # events, remote control, result notifications
    "+publish", "+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe",
    # kombu's pipelines and its binding scripts (REFRESH_BINDING calls TIME); a script's own calls are checked
    # against the same ACL, so a script reaches no further than its caller
    "+multi", "+exec", "+discard", "+watch", "+unwatch", "+eval", "+evalsha", "+script|load", "+script|exists",
    # `ck.reset()` finds the namespace's keys with SCAN (it lists key NAMES of the whole db, never values);
    # INFO for the Redis version a lesson prints. No KEYS, FLUSHALL, FLUSHDB, CONFIG, ACL, SELECT, MONITOR.
    "+scan", "+info",
)
FACILITATOR_COMMANDS = ("+ping", "+auth", "+hello", "+client|setname", "+client|id", "+get", "+mget", "+exists",
                        "+type", "+ttl", "+scan", "+info")


def channel_rules(ns: str, db: int = DB) -> list[str]:
    """The learner's pub/sub channels. Redis matches a PSUBSCRIBE pattern LITERALLY against these rules, so
    `&ns*` admits every channel the learner publishes or SUBSCRIBEs to, but each pattern kombu subscribes to
    must be named as it is (seen in ACL LOG): the worker's control box and heartbeat listener, and an event
    receiver's (the recorder's, Flower's) 'every event'."""
    fanout = f"{ns}/{db}."
    return [f"&{ns}*", f"&{fanout}celery.pidbox", f"&{fanout}celeryev/worker.*", f"&{fanout}celeryev/*"]


def learner_rules(name: str, password: str) -> list[str]:
    ns = namespace.of_learner(name)
    return ["on", "resetpass", f">{password}", "resetkeys", "resetchannels", "-@all", f"~{ns}*",
            *channel_rules(ns), *LEARNER_COMMANDS]


PROGRESS_KEYS = f"{DEFAULTS.namespace}*:coursekit:progress"
"""Where each learner's progress is published (`<namespace>coursekit:progress`); the facilitator reads these."""


def facilitator_rules(password: str) -> list[str]:
    # read-only: only reading commands, on the progress keys only, and no channel at all
    return ["on", "resetpass", f">{password}", "resetkeys", "resetchannels", "-@all", f"~{PROGRESS_KEYS}",
            *FACILITATOR_COMMANDS]


def parse_learners(listed: str | None = None, file: str | os.PathLike | None = None) -> list[str]:
    """Learner names from a comma-separated list and/or a file (one a line, '#' starts a comment)."""
    names = [n.strip() for n in (listed or "").split(",") if n.strip()]
    if file is not None:
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise CourseError(f"cannot read the learners file {file}: {exc.strerror}",
                              fix="name a text file with one learner name a line") from None
        names += [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
    if not names:
        raise CourseError("no learners named", fix="`--learners ana,bo,cy` or `--learners-file names.txt`")
    seen: dict[str, str] = {}
    for name in names:
        namespace.check_learner(name)
        if name.lower() in RESERVED:
            raise CourseError(f"{name!r} cannot be a learner's name: Redis or the facilitator uses it",
                              fix="pick another name for that learner")
        if name.lower() in seen:
            raise CourseError(f"two learners are named {seen[name.lower()]!r}"
                              f"{'' if seen[name.lower()] == name else f' and {name!r}'}: each needs a name of "
                              "their own (names differing only in case are refused too)",
                              fix="give one of them another name, e.g. with an initial: ana, ana.b")
        seen[name.lower()] = name
    return names


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_password(password: str | None, host: str) -> None:
    if password is None:
        if not is_loopback(host):
            raise CourseError(f"binding the team's Redis to {host} needs a password: anyone who reaches that "
                              "address could otherwise use it",
                              fix=f"add `--password SECRET` (at least 12 characters), or leave --host out to "
                                  "listen on 127.0.0.1 only")
        return
    if len(password) < 12 or any(c.isspace() for c in password):
        raise CourseError("the --password must have at least 12 characters and no spaces",
                          fix="e.g. `--password $(python -c 'import secrets; print(secrets.token_urlsafe(16))')`")


@dataclass
class Team:
    admin_url: str
    """The default (admin) user's URL: only `coursekit team` uses it."""
    host: str
    """The address learners connect to."""
    port: int
    passwords: dict[str, str] = field(default_factory=dict)
    """Learner (and facilitator) name -> password, for the users this call created."""

    def url_of(self, user: str) -> str:
        return f"redis://{user}:{quote(self.passwords[user], safe='')}@{self.host}:{self.port}/{DB}"

    def lines(self) -> list[str]:
        """Each learner's one-line set-up, then the facilitator's URL."""
        out = [f"COURSEKIT_LEARNER={name} COURSEKIT_BROKER_URL={self.url_of(name)}"
               for name in self.passwords if name != FACILITATOR]
        if FACILITATOR in self.passwords:
            out.append(f"# facilitator (reads {PROGRESS_KEYS} only): {self.url_of(FACILITATOR)}")
        return out


def _client(admin_url: str):
    import redis

    return redis.Redis.from_url(admin_url, socket_connect_timeout=DEFAULTS.probe_timeout_s * 3,
                                socket_timeout=DEFAULTS.probe_timeout_s * 3)


def configure(admin_url: str, learners: list[str], host: str | None = None) -> Team:
    """Add one ACL user per learner (and the facilitator's, once) to the Redis at `admin_url`, whose user must
    be allowed ACL SETUSER. A name that already has a user there is refused: it is somebody else's."""
    import redis

    parsed = urlparse(admin_url)
    team = Team(admin_url, host or parsed.hostname or "127.0.0.1", parsed.port or DEFAULTS.redis_port)
    try:
        with _client(admin_url) as client:
            users = {u.decode() if isinstance(u, bytes) else u for u in client.execute_command("ACL", "USERS")}
            taken = [name for name in learners if name in users]
            if taken:
                raise CourseError(f"{', '.join(taken)} already {'has' if len(taken) == 1 else 'have'} a user on "
                                  f"this broker: another learner chose that name",
                                  fix="pick other names for the newcomers, or `coursekit team down` to start over")
            for name in learners:
                team.passwords[name] = secrets.token_urlsafe(12)
                client.execute_command("ACL", "SETUSER", name, *learner_rules(name, team.passwords[name]))
            if FACILITATOR not in users:
                team.passwords[FACILITATOR] = secrets.token_urlsafe(12)
                client.execute_command("ACL", "SETUSER", FACILITATOR, *facilitator_rules(team.passwords[FACILITATOR]))
    except redis.ResponseError as exc:
        raise BrokerError(f"the Redis at {safe(admin_url)} refused to set up users: {exc}",
                          fix="give --redis a URL whose user may run ACL SETUSER (Redis 6.2 or newer)") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach the Redis at {safe(admin_url)}: {exc}",
                          fix="start it, or leave --redis out to let coursekit start one") from None
    return team


def up(learners: list[str], host: str = "127.0.0.1", port: int | None = None, password: str | None = None,
       advertise: str | None = None, redis_url: str | None = None) -> Team:
    """Start the team's redis-server (or reuse the one started earlier, or configure `redis_url`) and add the
    learners' users to it."""
    if redis_url:
        return configure(redis_url, learners, advertise)
    record = state.read(STATE_FILE)
    if record is not None and embedded.is_ours(record):
        if (port is not None and port != record["port"]) or host != record.get("bind"):
            raise CourseError(f"a team Redis already runs on {record.get('bind')} port {record['port']}",
                              fix="add learners to it (same --host, no --port), or `coursekit team down` first")
        return configure(record["url"], learners, record["advertise"])
    check_password(password, host)
    record = embedded.start(port, bind=host, password=password or secrets.token_urlsafe(16),
                            record_as=STATE_FILE, folder_name="team-redis")
    record["bind"] = host
    record["advertise"] = advertise or (host if host not in ("0.0.0.0", "::", "*") else socket.getfqdn())
    state.write(STATE_FILE, record, private=True)  # it holds the admin password
    return configure(record["url"], learners, record["advertise"])


def admin_url() -> str | None:
    """The URL of the team Redis that `up` started here and that still runs (its admin user reads every learner's
    progress), or None."""
    record = state.read(STATE_FILE)
    return record["url"] if record is not None and embedded.is_ours(record) else None


def down() -> str:
    record = state.read(STATE_FILE)
    if record is None:
        return "nothing to stop: coursekit runs no team Redis"
    if embedded.stop(record, record_as=STATE_FILE):
        return f"stopped the team Redis on port {record['port']} (pid {record['pid']})"
    return f"removed stale state for port {record.get('port')}: that team Redis had already stopped"


def write_lines(team: Team, out: str | os.PathLike) -> Path:
    """The set-up lines in a file only this user may read (they hold passwords)."""
    path = Path(out)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(team.lines()) + "\n")
    return path


def refusal(url: str, variable: str, answer: str) -> BrokerError | None:
    """A clear error for a shared broker's refusals (WRONGPASS, NOAUTH, NOPERM); None for other answers."""
    user = urlparse(url).username or "default"
    if "WRONGPASS" in answer or "invalid username-password" in answer:
        return BrokerError(f"the broker at {safe(url)} refused user {user!r} and the password in {variable} "
                           "(WRONGPASS: a wrong password, or no such learner on that broker)",
                           fix="copy your set-up line from the facilitator again, exactly; if your name has no "
                               "line, ask them to add you: `coursekit team up --learners NAME`")
    if any(sign in answer for sign in ("NOAUTH", "Authentication required", "already authenticated")):
        return BrokerError(f"the broker at {safe(url)} asks for a password and {variable} has none (NOAUTH)",
                           fix="use the set-up line from the facilitator: redis://NAME:PASSWORD@HOST:PORT/0")
    if "NOPERM" in answer or "no permissions" in answer:
        here = namespace.prefix()
        fix = (f"set COURSEKIT_LEARNER={user} and unset COURSEKIT_NAMESPACE, as your set-up line says"
               if user != "default" else "ask the facilitator for your own set-up line")
        return BrokerError(f"user {user!r} of {variable} may not use the namespace {here!r} on that broker "
                           "(NOPERM): each learner may touch only their own", fix=fix)
    in_a_room = bool(os.environ.get("COURSEKIT_LEARNER") or os.environ.get("JUPYTERHUB_USER")) \
        and urlparse(url).scheme in ("redis", "rediss")  # a room's broker is a Redis that `team up` made
    if in_a_room and user not in RESERVED and ("refused" in answer or "timed out" in answer.lower()):
        return BrokerError(f"the room's shared broker at {safe(url)} does not answer ({answer}): it has stopped, "
                           "or the network between you and it is down",
                           fix="tell the facilitator: `coursekit team up --learners ...` starts a new one, with a new "
                               "set-up line for you to paste; your workspace and your progress are kept on your "
                               "machine, and you go on from where you were")
    return None

