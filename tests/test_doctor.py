"""`coursekit doctor`: says whether the course can run here, and every problem comes with its fix."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coursekit import broker, doctor, probe

BAD_URL = "redis://127.0.0.1:1/0"

def run_doctor(**env_changes: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "coursekit", "doctor"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_doctor_passes_here():
    done = run_doctor()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The course can run here." in done.stdout
    assert "[FAIL]" not in done.stdout
    assert "Traceback" not in done.stderr


def test_doctor_fails_on_an_unreachable_broker_url():
    done = run_doctor(COURSEKIT_BROKER_URL=BAD_URL)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "fix" in out.lower(), out
    assert BAD_URL in out
    assert "The course cannot run until the FAIL lines are fixed." in out


def test_doctor_fails_on_an_unusable_scheme():
    done = run_doctor(COURSEKIT_BROKER_URL="foo://x")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "scheme 'foo'" in out and "cannot use" in out, out
    assert "fix" in out.lower(), out


def test_empty_broker_url_counts_as_unset():
    done = run_doctor(COURSEKIT_BROKER_URL="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The course can run here." in done.stdout
    # the same Redis an unset variable resolves to: the machine's on 6379 (the embedded one where there is none)
    expected = broker.Local(broker.LOCAL_REDIS).find([])
    if expected is not None:
        assert f"[ok  ] redis: {expected.describe()}" in done.stdout, done.stdout
    else:
        assert "[ok  ] redis: none running; `coursekit up` will start the embedded" in done.stdout, done.stdout
    assert "COURSEKIT_BROKER_URL=''" not in done.stdout


def test_windows_gets_the_solo_pool_advice(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    finding = doctor.check_os()
    assert not finding.ok
    assert "solo" in finding.fix
    assert any("fix:" in line and "solo" in line for line in finding.lines())


def test_linux_needs_no_os_advice(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    finding = doctor.check_os()
    assert finding.ok and "solo" not in finding.lines()[0]


def test_report_exit_code_follows_blocking_findings():
    fine = [doctor.Finding("a", True, "fine"), doctor.Finding("b", False, "meh", "do x")]  # a warning only
    text, code = doctor.report(fine)
    assert code == 0 and text.endswith("The course can run here.")
    assert "[warn] b: meh" in text and "fix: do x" in text
    blocked = fine + [doctor.Finding("c", False, "broken", "do y", blocking=True)]
    text, code = doctor.report(blocked)
    assert code == 1 and "[FAIL] c: broken" in text and "fix: do y" in text
    assert text.endswith("The course cannot run until the FAIL lines are fixed.")


def test_a_port_held_by_something_else_is_reported():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        findings = doctor.check_ports([(port, "Redis", f"redis://127.0.0.1:{port}/0",
                                        lambda url: probe.redis_answers(url, timeout=0.3), "COURSEKIT_BROKER_URL")])
    assert len(findings) == 1 and not findings[0].ok and findings[0].topic == f"port {port}"
    assert "COURSEKIT_BROKER_URL" in findings[0].fix


def test_the_real_brokers_ports_are_not_conflicts():
    assert doctor.check_ports() == []
