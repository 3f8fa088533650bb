"""Replays every conformance vector case through every back end.

Cases come from the ``*.json`` files of ``$KATO_CONFORMANCE_DIR`` (default: the
``vectors`` directory beside this file), one pytest case per vector case with the id
``<file stem>::<case id>``, for each back end of the ``conformance_adapter_factory``
fixture (tests/conftest.py). Cases tagged ``http-only`` are skipped unless a factory
lists the tag in its optional ``runs_tags`` attribute (the HTTP/JSON back ends, which have
a raw wire format), as are the tags listed (comma-separated) in
``$KATO_CONFORMANCE_SKIP_TAGS`` and in a factory's optional ``skip_tags`` attribute.

    .venv/bin/python -m pytest tests/conformance -q
    KATO_CONFORMANCE_SKIP_TAGS=timing,slow .venv/bin/python -m pytest tests/conformance -q
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conformance.runner import CaseSkipped, load_cases, run_case

VECTOR_DIR = Path(os.environ.get("KATO_CONFORMANCE_DIR") or Path(__file__).parent / "vectors")
ALWAYS_SKIPPED = frozenset({"http-only"})
CASES = load_cases(VECTOR_DIR)


def _skip_tags(factory: object) -> frozenset[str]:
    from_env = {tag.strip() for tag in os.environ.get("KATO_CONFORMANCE_SKIP_TAGS", "").split(",")}
    always = ALWAYS_SKIPPED - frozenset(getattr(factory, "runs_tags", ()))
    return always | {tag for tag in from_env if tag} | frozenset(getattr(factory, "skip_tags", ()))


@pytest.mark.parametrize("case", CASES, ids=[case.test_id for case in CASES])
def test_conformance(case, conformance_adapter_factory):
    try:
        run_case(case, conformance_adapter_factory, _skip_tags(conformance_adapter_factory))
    except CaseSkipped as skipped:
        pytest.skip(str(skipped))
