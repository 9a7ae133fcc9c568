"""The course's packaging files agree with each other and are safe to use.

environment.yml (conda) and pyproject.toml (pip) must pin the same packages at the same versions, and
docker/compose.yml must bind to loopback only, pin every image and healthcheck every service.
Each check is a function returning a list of problems, and each has a test proving it can report one.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
COMPOSE = ROOT / "docker" / "compose.yml"


# ---------------------------------------------------------------------------------------------------------------
# pins: pyproject.toml <-> environment.yml


def _normalise(name: str) -> str:
    """PEP 503 name normalisation: case-insensitive, and '-', '_' and '.' are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pin_key(spec: str) -> tuple[str, str]:
    """'Celery[Redis] == 5.7.0' -> ('celery[redis]', '==5.7.0'). Extras stay part of the name, sorted, so
    celery[redis] and celery are different entries (one installs redis-py, the other does not)."""
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise AssertionError(f"not a requirement: {spec!r} ({exc})") from exc
    extras = sorted(_normalise(e) for e in req.extras)
    name = _normalise(req.name) + (f"[{','.join(extras)}]" if extras else "")
    return name, str(req.specifier)


def compare_pins(left: list[str], right: list[str], left_label: str = "left",
                 right_label: str = "right") -> list[str]:
    """Every difference between two requirement lists, as readable lines; [] when they agree exactly.
    Each entry must be an exact pin (==), and no package may be listed twice."""
    problems: list[str] = []
    tables = []
    for label, specs in ((left_label, left), (right_label, right)):
        table: dict[str, str] = {}
        for spec in specs:
            name, version = pin_key(spec)
            if not re.fullmatch(r"==[^,<>=!~*]+", version):
                problems.append(f"{label}: {spec!r} is not pinned to one exact version (use ==)")
            if name in table:
                problems.append(f"{label}: {name} is listed twice")
            table[name] = version
        tables.append(table)
    a, b = tables
    for name in sorted(a.keys() - b.keys()):
        problems.append(f"{name}{a[name]} is in {left_label} but not in {right_label}")
    for name in sorted(b.keys() - a.keys()):
        problems.append(f"{name}{b[name]} is in {right_label} but not in {left_label}")
    for name in sorted(a.keys() & b.keys()):
        if a[name] != b[name]:
            problems.append(f"{name}: {left_label} pins {a[name]}, {right_label} pins {b[name]}")
    return problems


def pyproject_pins() -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))


def environment_pip_pins() -> list[str]:
    env = yaml.safe_load(ENVIRONMENT.read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, f"environment.yml should have exactly one pip: list, found {len(pip_lists)}"
    return list(pip_lists[0])


def test_environment_yml_pins_what_pyproject_pins():
    py, env = pyproject_pins(), environment_pip_pins()
    assert len(py) > 10 and len(env) > 10, "parsed suspiciously few requirements"
    problems = compare_pins(py, env, "pyproject.toml", "environment.yml")
    assert problems == [], "\n".join(problems)


def test_compare_pins_reports_each_kind_of_difference():
    left = ["celery[redis]==5.7.0", "kombu==5.7.0", "click==8.5.1", "Platform_Dirs==4.14.7"]
    right = ["celery==5.7.0", "kombu==5.6.0", "pandas==3.1.1", "platform-dirs==4.14.7"]
    problems = compare_pins(left, right, "pyproject.toml", "environment.yml")
    text = "\n".join(problems)
    # the extra matters: celery[redis] and plain celery are not the same entry
    assert "celery[redis]==5.7.0 is in pyproject.toml but not in environment.yml" in text
    assert "celery==5.7.0 is in environment.yml but not in pyproject.toml" in text
    assert "kombu: pyproject.toml pins ==5.7.0, environment.yml pins ==5.6.0" in text
    assert "click==8.5.1 is in pyproject.toml but not in environment.yml" in text
    assert "pandas==3.1.1 is in environment.yml but not in pyproject.toml" in text
    # names compare case- and separator-insensitively, so this pair is not a difference
    assert not any("platform" in p for p in problems), problems
    assert len(problems) == 5, problems


def test_compare_pins_normalises_names_and_extras():
    assert compare_pins(["Celery[Redis]==5.7.0", "PyYAML==6.0.3"], ["celery[redis] == 5.7.0", "pyyaml==6.0.3"]) == []
    assert compare_pins(["celery[redis,msgpack]==5.7.0"], ["celery[msgpack,redis]==5.7.0"]) == []


def test_compare_pins_rejects_loose_and_duplicate_entries():
    problems = compare_pins(["kombu>=5.7", "redis==8.1.0", "redis==8.1.0"], ["kombu>=5.7", "redis==8.1.0"])
    assert any("kombu>=5.7" in p and "not pinned" in p for p in problems), problems
    assert any("redis is listed twice" in p for p in problems), problems


# ---------------------------------------------------------------------------------------------------------------
# docker/compose.yml

REQUIRED_SERVICES = ("redis", "rabbitmq", "flower")
LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:\d{1,5}:\d{1,5}(/(tcp|udp))?")


def missing_services(compose: dict, required=REQUIRED_SERVICES) -> list[str]:
    services = compose.get("services") or {}
    return [f"service {name!r} is missing" for name in required if name not in services]


def port_problems(compose: dict) -> list[str]:
    """Every published port must be "127.0.0.1:HOST:CONTAINER": anything else is reachable from the network."""
    problems = []
    for name, service in (compose.get("services") or {}).items():
        for entry in (service or {}).get("ports", []) or []:
            if isinstance(entry, dict):  # long syntax
                ok = entry.get("host_ip") == "127.0.0.1" and entry.get("published") is not None
                shown = entry
            else:
                ok = isinstance(entry, str) and LOOPBACK_PORT.fullmatch(entry.strip()) is not None
                shown = entry
            if not ok:
                problems.append(f"{name}: port {shown!r} is not bound to 127.0.0.1 (write \"127.0.0.1:HOST:CONTAINER\")")
    return problems


def image_problems(compose: dict) -> list[str]:
    """Every image needs an explicit tag (or digest) other than `latest`."""
    problems = []
    for name, service in (compose.get("services") or {}).items():
        image = (service or {}).get("image")
        if not image:
            problems.append(f"{name}: no image")
            continue
        if "@" in image:  # pinned by digest
            continue
        last = image.rsplit("/", 1)[-1]  # a registry host may carry a port: registry:5000/redis
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag:
            problems.append(f"{name}: image {image!r} has no tag (it means latest)")
        elif tag == "latest":
            problems.append(f"{name}: image {image!r} uses the moving tag latest")
    return problems


def healthcheck_problems(compose: dict) -> list[str]:
    problems = []
    for name, service in (compose.get("services") or {}).items():
        check = (service or {}).get("healthcheck")
        if not check or check.get("disable") or not check.get("test"):
            problems.append(f"{name}: no healthcheck")
    return problems


def compose_problems(compose: dict) -> list[str]:
    return missing_services(compose) + port_problems(compose) + image_problems(compose) + \
        healthcheck_problems(compose)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_course_services(compose):
    assert missing_services(compose) == []


def test_compose_ports_bind_loopback_only(compose):
    ports = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert ports, "no ports published at all: the check would pass vacuously"
    assert port_problems(compose) == []


def test_compose_images_are_pinned(compose):
    assert image_problems(compose) == []


def test_compose_services_have_healthchecks(compose):
    assert healthcheck_problems(compose) == []


def test_compose_checks_catch_a_bad_file():
    bad = {"services": {
        "redis": {"image": "redis", "ports": ["6379:6379"]},
        "rabbitmq": {"image": "redis:latest", "ports": ["0.0.0.0:5672:5672", "127.0.0.1:15672:15672"],
                     "healthcheck": {"test": ["CMD", "true"]}},
        "worker": {"ports": [{"target": 80, "published": 8080}],
                   "healthcheck": {"disable": True}},
    }}
    problems = compose_problems(bad)
    text = "\n".join(problems)
    assert "service 'flower' is missing" in text
    assert "redis: port '6379:6379' is not bound to 127.0.0.1" in text
    assert "rabbitmq: port '0.0.0.0:5672:5672' is not bound to 127.0.0.1" in text
    assert "worker: port {" in text
    assert "redis: image 'redis' has no tag" in text
    assert "rabbitmq: image 'redis:latest' uses the moving tag latest" in text
    assert "worker: no image" in text
    assert "redis: no healthcheck" in text
    assert "worker: no healthcheck" in text
    assert not any("15672" in p for p in problems), "a loopback-bound port was reported"
    assert not any(p.startswith("rabbitmq: no healthcheck") for p in problems)
    assert len(problems) == 9, problems


def test_image_check_reads_registry_ports_and_digests():
    compose = {"services": {
        "a": {"image": "registry.local:5000/redis"},          # the :5000 is the registry's port, not a tag
        "b": {"image": "registry.local:5000/redis:7.4.1"},
        "c": {"image": "redis@sha256:" + "0" * 64},
        "d": {"image": "mher/flower:2.0.1"},
    }}
    assert image_problems(compose) == ["a: image 'registry.local:5000/redis' has no tag (it means latest)"]
