"""What a test needs from the machine, and what happens when it is missing.

A test that needs a back end (redis-server, clickhouse-server), a tool (grpcurl, go,
node, jq, make) or the compiled extension calls `missing(what)`, or carries a
`needs(available, what)` marker, for when it is not there. On a developer's machine that
is a skip naming what is missing; under CI (`CI=true`) the hook in tests/conftest.py turns
every such skip into a failure, so a CI run whose install step went wrong can never pass by skipping.
Skips a user would accept (a conformance case that does not apply to a mode, data that
lives outside the repository) use plain `pytest.skip` with their own reason.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

MISSING = "missing: "  # every skip for a missing requirement starts with this


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(what: str, allow_module_level: bool = False) -> NoReturn:
    """Skip because `what` is not available here; under CI, fail instead."""
    if in_ci():
        pytest.fail(f"CI=true and {MISSING}{what}", pytrace=False)
    pytest.skip(MISSING + what, allow_module_level=allow_module_level)


def needs(available: bool, what: str) -> pytest.MarkDecorator:
    """A `skipif` marker for a module or test; tests/conftest.py fails it under CI."""
    return pytest.mark.skipif(not available, reason=MISSING + what)
