"""What the suite needs from the machine. Here a missing piece (RabbitMQ, chromium, network namespaces) skips the
tests that need it, with the reason; on CI (CI=true), which must run every test, it fails them instead."""
from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}, and CI must run these tests", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails instead)")
