"""Hooks of the end-to-end tests: a test's outcome is visible to its fixtures'
finalizers (``request.node.stash[PHASE_REPORTS]``), so a fixture that ran processes can
print their logs when the test failed."""

from __future__ import annotations

from collections.abc import Generator

import pytest

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def failed(node: pytest.Item) -> bool:
    """Whether the set-up or the call of test ``node`` failed (in a finalizer)."""
    reports = node.stash.get(PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())
