"""Conformance run summary: one line with the case counts at the end of the session."""

from __future__ import annotations

from collections import Counter

import pytest

_CONFORMANCE_MODULE = "test_conformance.py"
_outcomes: dict[str, str] = {}  # nodeid -> passed / failed / skipped


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _CONFORMANCE_MODULE not in report.nodeid.split("::")[0]:
        return
    previous = _outcomes.get(report.nodeid)
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and previous != "failed":
        _outcomes[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed and previous is None:
        _outcomes[report.nodeid] = "passed"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _outcomes:
        return
    counts = Counter(_outcomes.values())
    terminalreporter.write_line(
        f"conformance: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    )
