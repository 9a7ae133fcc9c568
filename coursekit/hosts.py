"""`OtherHost`: a second machine on this one, for the lesson on running workers on many hosts.

It is a network namespace and a UTS namespace (its own interfaces and its own hostname), joined to this host by
a veth pair on a /30 of its own. A worker started there with `far.worker(...)` is an ordinary coursekit Worker,
entered into those namespaces with `nsenter`; it reaches the course broker through a small TCP forwarder that
listens on this host's end of the pair, so it uses the same broker and key namespace as the notebook.

Nothing outlives the process that made it, even if that process is SIGKILLed. The namespaces are held open only
by an *anchor* process (no `ip netns` name, no bind mount) that exits as soon as its owner is gone; once the
anchor and the workers (which follow their owner, see launch.py) have exited, the kernel frees both namespaces,
and the veth pair goes with the network one. The forwarder is a thread of the owner. Needs root, `ip`
(iproute2) and `nsenter`/`unshare` (util-linux).
"""
from __future__ import annotations

import asyncio
import atexit
import fcntl
import ipaddress
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import broker
from .defaults import DEFAULTS
from .errors import CourseError
from .worker import Worker, stop_all

POOL = ipaddress.ip_network("10.213.0.0/16")
"""Where the /30 of each other host is taken from; a /30 that any address or route here overlaps is skipped."""

LOCK = Path("/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()) / "coursekit-hosts.lock"
"""Held while a subnet is picked and assigned, so two owners at once (parallel tests) never pick the same one.
Machine-wide on purpose: the state folder is per learner, the network is not."""

DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "pyamqp": 5672, "amqps": 5671}

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# The anchor: enters nothing, it IS the other host. `unshare` gives it new network and UTS namespaces, it names
# the host, says ready, and lives while its owner (its parent) does: once the owner dies it is re-parented.
_ANCHOR = """\
import os, socket, sys, time
owner, hostname, poll = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
socket.sethostname(hostname)
print("ready", flush=True)
while os.getppid() == owner:
    time.sleep(poll)
"""

_live: "set[OtherHost]" = set()


class HostError(CourseError):
    """This machine cannot make another host, or the other host could not be made."""


def _tool(name: str) -> str | None:
    # A non-root user's PATH often lacks the sbin folders, where Debian puts `ip`.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def unavailable() -> str | None:
    """Why this machine cannot make another host, or None when it can. Never raises: it asks the kernel for a
    throw-away network namespace with a veth pair in it, the same privileges OtherHost needs."""
    try:
        if not sys.platform.startswith("linux"):
            return f"another host needs Linux network namespaces; this is {sys.platform}"
        missing = [t for t in ("ip", "unshare", "nsenter") if _tool(t) is None]
        if missing:
            return (f"the command{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"{'are' if len(missing) > 1 else 'is'} missing (Debian: apt-get install iproute2 util-linux)")
        done = subprocess.run([_tool("unshare"), "--net", "--uts", "--", _tool("ip"), "link", "add", "ckprobe0",
                               "type", "veth", "peer", "name", "ckprobe1"],
                              capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            return None
        said = (done.stderr.strip() or f"exit code {done.returncode}").splitlines()[-1]
        if os.geteuid() != 0:
            return f"making another host needs root (this process runs as uid {os.geteuid()}): {said}"
        return f"the kernel refused a network namespace with a veth pair: {said}"
    except Exception as exc:  # the promise is a reason, never an exception
        return f"could not tell whether this machine can make another host ({type(exc).__name__}: {exc})"


class _Forwarder:
    """Listens on `listen`:<free port> and pipes each connection to `target` (host, port), in a daemon thread
    of its own event loop, so it keeps forwarding while the notebook's main thread is busy or blocked."""

    def __init__(self, listen: str, target: tuple[str, int]):
        self.target = target
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="coursekit-forwarder")
        self._thread.start()
        self._tasks: set[asyncio.Task] = set()
        opening = asyncio.start_server(self._serve, listen, 0)
        self.server = asyncio.run_coroutine_threadsafe(opening, self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        self._tasks.add(asyncio.current_task())
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()  # the client sees the broker refuse, as it would without us
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._tasks.discard(asyncio.current_task())

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()  # one side gone: end the other too (Redis and AMQP never half-close)

    async def _shut(self) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shut(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


class FarWorker(Worker):
    """A coursekit Worker whose process runs on another host: the same command, entered into that host's
    namespaces, with the broker's URL as that host sees it. Only the host part of its node name differs."""

    def __init__(self, host: "OtherHost", app: str, **options):
        super().__init__(app, **options)
        self.host = host
        self.nodename = f"{self.nodename.rsplit('@', 1)[0]}@{host.hostname}"

    def command(self) -> list[str]:
        # nsenter joins the namespaces and execs (no fork for these two), so the worker's parent is still this
        # process and launch.py's owner check works as for any worker.
        return self.host.enter() + super().command()

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["COURSEKIT_BROKER_URL"] = self.host.url_for(env["COURSEKIT_BROKER_URL"])  # results too: same URL
        if env.get("COURSEKIT_RABBITMQ_URL"):  # an app on RabbitMQ: its broker must be reached the same way
            env["COURSEKIT_RABBITMQ_URL"] = self.host.url_for(env["COURSEKIT_RABBITMQ_URL"])
        return env

    def spawn(self) -> "FarWorker":
        if not self.host.is_up:
            raise HostError(f"host {self.host.hostname!r} is not up, so worker {self.name} cannot start there",
                            fix="start the worker inside `with hosts.OtherHost(...) as far:`")
        return super().spawn()


class OtherHost:
    """Another host on this machine: `with OtherHost("far") as far: far.worker("coursekit.labs.first")`."""

    def __init__(self, hostname: str = "far"):
        if not isinstance(hostname, str) or not _HOSTNAME.match(hostname):
            raise HostError(f"{hostname!r} is not a hostname",
                            fix="use lower-case letters, digits and inner hyphens, at most 63 characters, "
                                "e.g. OtherHost('far')")
        self.hostname = hostname
        self.address: str | None = None
        """Its IP address, on its end of the veth pair (its interface is called eth0 there)."""
        self.gateway: str | None = None
        """This host's IP address on the veth pair: what the other host reaches us at."""
        self.interface: str | None = None
        """This host's end of the veth pair."""
        self.broker_url: str | None = None
        """The course broker as the other host sees it: this host's gateway address, a forwarder's port."""
        self._anchor: subprocess.Popen | None = None
        self._forwarders: dict[tuple[str, int], _Forwarder] = {}
        self._workers: list[FarWorker] = []

    @property
    def pid(self) -> int | None:
        """The anchor process: the other host's namespaces are those of this pid."""
        return self._anchor.pid if self._anchor else None

    @property
    def is_up(self) -> bool:
        return self._anchor is not None and self._anchor.poll() is None

    # -- making it ---------------------------------------------------------------------------------------
    def start(self) -> "OtherHost":
        if self.is_up:
            return self
        reason = unavailable()
        if reason is not None:
            raise HostError(f"cannot make another host here: {reason}",
                            fix="run as root on Linux with iproute2 and util-linux installed")
        course = broker.current()  # fail before anything starts when there is no broker
        _live.add(self)
        try:
            self._spawn_anchor()
            self._wire()
            self.broker_url = self.url_for(course.url)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_anchor(self) -> None:
        cmd = [_tool("unshare"), "--net", "--uts", "--", sys.executable, "-I", "-S", "-c", _ANCHOR,
               str(os.getpid()), self.hostname, str(DEFAULTS.owner_poll_s)]
        self._anchor = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        ready, _, _ = select.select([self._anchor.stdout], [], [], 10)
        if not ready or self._anchor.stdout.readline().strip() != "ready":
            self._anchor.kill()
            said = self._anchor.stderr.read().strip()
            raise HostError(f"the namespaces of host {self.hostname!r} could not be made: {said or 'no answer'}")

    def _wire(self) -> None:
        """The veth pair: this end named after the anchor's pid (unique while it lives), the other end eth0."""
        self.interface = f"ckh{self.pid}"
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
            subnet = _free_subnet()
            gateway, address = (str(ip) for ip in subnet.hosts())
            _ip([], f"link add {self.interface} type veth peer name eth0 netns {self.pid}\n"
                    f"addr add {gateway}/{subnet.prefixlen} dev {self.interface}\n"
                    f"link set {self.interface} up\n")
        _ip(self.enter(), f"addr add {address}/{subnet.prefixlen} dev eth0\nlink set eth0 up\nlink set lo up\n")
        self.gateway, self.address = gateway, address

    # -- using it ----------------------------------------------------------------------------------------
    def enter(self) -> list[str]:
        """The argv prefix that runs a command on this host."""
        return [_tool("nsenter"), f"--target={self.pid}", "--net", "--uts", "--"]

    def run(self, *argv: str) -> str:
        """Run a command on this host and return what it printed, e.g. `far.run("ip", "-brief", "address")`."""
        done = subprocess.run(self.enter() + list(argv), capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise HostError(f"{' '.join(argv)} failed on host {self.hostname!r}: {done.stderr.strip()}")
        return done.stdout

    def url_for(self, url: str) -> str:
        """`url` (a broker on this host) as the other host reaches it: through a forwarder on the gateway."""
        if not self.is_up:  # with no gateway yet, a forwarder would listen on every interface
            raise HostError(f"host {self.hostname!r} is not up, so it reaches no broker",
                            fix="use it inside `with hosts.OtherHost(...) as far:`")
        parts = urlsplit(url)
        if not parts.hostname or parts.scheme not in DEFAULT_PORTS:
            raise HostError(f"cannot forward {url!r} to host {self.hostname!r}",
                            fix="another host reaches brokers by TCP: use a redis:// or amqp:// URL")
        target = (parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])
        if target not in self._forwarders:
            self._forwarders[target] = _Forwarder(self.gateway, target)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo + '@' if userinfo else ''}{self.gateway}:{self._forwarders[target].port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def worker(self, app: str, **options) -> FarWorker:
        """A Worker (not started) that runs on this host; it takes every option `coursekit.Worker` takes."""
        w = FarWorker(self, app, **options)
        self._workers.append(w)
        return w

    # -- ending it ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Workers first (a warm shutdown still needs the broker), then the forwarders, the pair, the anchor."""
        stop_all([w for w in self._workers if w.running])
        for forwarder in self._forwarders.values():
            forwarder.close()
        self._forwarders.clear()
        if self.is_up and self.interface:
            # Deleting one end deletes both now; the namespace's own cleanup would do it later, asynchronously.
            subprocess.run([_tool("ip"), "link", "del", self.interface], capture_output=True, timeout=10)
        if self._anchor is not None and self._anchor.poll() is None:
            self._anchor.kill()
        if self._anchor is not None:
            self._anchor.wait()
            self._anchor.stdout.close()
            self._anchor.stderr.close()
        _live.discard(self)

    def __enter__(self) -> "OtherHost":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        if not self.is_up:
            return f"<OtherHost {self.hostname} (down)>"
        return f"<OtherHost {self.hostname} {self.address} via {self.interface} ({self.gateway}), " \
               f"broker {self.broker_url}>"


def _ip(prefix: list[str], batch: str) -> None:
    done = subprocess.run(prefix + [_tool("ip"), "-batch", "-"], input=batch, capture_output=True, text=True,
                          timeout=10)
    if done.returncode != 0:
        raise HostError(f"ip could not wire the other host: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /30 of POOL that no address or route of this host overlaps (call it with LOCK held)."""
    taken = []
    for what in (["-o", "-4", "address"], ["-4", "route", "show", "table", "all"]):
        listing = subprocess.run([_tool("ip"), *what], capture_output=True, text=True, timeout=10).stdout
        for word in listing.split():
            if "/" in word or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", word):
                try:
                    taken.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
    taken = [net for net in taken if net.version == 4 and net.overlaps(POOL)]
    for subnet in POOL.subnets(new_prefix=30):
        if not any(subnet.overlaps(net) for net in taken):
            return subnet
    raise HostError(f"every /30 of {POOL} is in use", fix="stop other hosts first (hosts.OtherHost.stop)")


@atexit.register
def _stop_at_exit() -> None:
    # Registered after worker.py's own atexit, so it runs before it: our workers stop while the forwarder
    # they need still runs.
    for host in list(_live):
        host.stop()
