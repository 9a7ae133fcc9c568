"""coursekit.hosts: a real worker on another host (network + UTS namespaces, veth pair), its ends."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from procs import running, wait_gone, wait_until_gone

import coursekit as ck
from coursekit import hosts
from coursekit.labs.first import add, where_am_i

LAB = "coursekit.labs.first"
WHY_NOT = hosts.unavailable()
needs_hosts = pytest.mark.skipif(WHY_NOT is not None, reason=f"no other host on this machine: {WHY_NOT}")


def namespace_of(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@needs_hosts
def test_a_worker_on_another_host_runs_the_course_tasks(clean_namespace):
    with hosts.OtherHost("far") as far:
        subnet = ipaddress.ip_network(f"{far.gateway}/30", strict=False)
        assert ipaddress.ip_address(far.address) in subnet and far.address != far.gateway
        assert far.run("hostname").strip() == "far"
        assert far.broker_url.startswith(f"redis://{far.gateway}:")
        with far.worker(LAB) as w:
            assert w.nodename.endswith("@far")
            assert ck.get(add.delay(2, 3)) == 5  # sent by this process, run there, result read back here
            done = where_am_i.delay()
            ran = ck.get(done)
            assert done.worker == w.nodename  # Celery's own record of where it ran
            # The pool child that ran it lives in the other host's namespaces, not in ours.
            assert ran["pid"] in w.children
            for kind in ("net", "uts"):
                assert namespace_of(ran["pid"], kind) == namespace_of(far.pid, kind) != namespace_of("self", kind)
            env = Path(f"/proc/{w.pid}/environ").read_bytes().split(b"\0")
            assert f"COURSEKIT_BROKER_URL={far.broker_url}".encode() in env
        anchor, interface = far.pid, far.interface
        assert interface_exists(interface)
    assert not running(anchor) and not interface_exists(interface)


@needs_hosts
def test_two_hosts_at_once_do_not_collide(redis_url):
    with hosts.OtherHost("one") as one, hosts.OtherHost("two") as two:
        assert one.interface != two.interface
        nets = [ipaddress.ip_network(f"{h.gateway}/30", strict=False) for h in (one, two)]
        assert not nets[0].overlaps(nets[1])
        assert two.run("hostname").strip() == "two"


@needs_hosts
def test_nothing_is_left_when_the_owner_is_sigkilled(tmp_path, redis_url):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import json, time
        from coursekit import hosts
        far = hosts.OtherHost("far").start()
        w = far.worker({LAB!r}).start()
        print(json.dumps({{"anchor": far.pid, "worker": w.pid, "children": w.children,
                           "interface": far.interface}}), flush=True)
        time.sleep(120)
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        made = json.loads(owner.stdout.readline())
        pids = [made["anchor"], made["worker"], *made["children"]]
        assert all(running(pid) for pid in pids) and interface_exists(made["interface"])
        owner.kill()
        owner.wait(5)
        assert wait_until_gone(lambda: [pid for pid in pids if running(pid)], seconds=8) == []
        # The kernel frees the namespace, and the veth pair with it, once no process is left in it.
        assert wait_until_gone(lambda: interface_exists(made["interface"]), seconds=8) is False
    finally:
        if owner.poll() is None:
            owner.kill()


@needs_hosts
def test_bad_urls_are_refused_and_a_stopped_host_takes_no_worker(redis_url):
    far = hosts.OtherHost("far").start()
    anchor = far.pid
    with pytest.raises(hosts.HostError, match="cannot forward"):
        far.url_for("redis+socket:///tmp/redis.sock")
    far.stop()
    assert wait_gone(anchor) and not interface_exists(far.interface)
    with pytest.raises(hosts.HostError, match="not up"):
        far.worker(LAB).start()
    with pytest.raises(hosts.HostError, match="not up"):
        far.url_for(redis_url)


def test_a_bad_hostname_is_refused():
    with pytest.raises(hosts.HostError, match="is not a hostname") as err:
        hosts.OtherHost("Far Away")
    assert "OtherHost('far')" in err.value.fix


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_unavailable_says_why_when_not_root():
    # The interpreter under test lives in root's home, which another user cannot run: so drop to `nobody`
    # after start-up, then ask the real kernel as that user.
    probe = ("from coursekit import hosts; import os; os.setgroups([]); os.setgid(65534); os.setuid(65534); "
             "print(hosts.unavailable())")
    said = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("making another host needs root (this process runs as uid 65534)")
