"""The browser tests' chromium: docs.chromium's launch, skipped when it cannot start.

Skipped when chromium or Playwright is missing, unless ROWGEN_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from docs.chromium import LOCAL_HOSTS, TIMEOUT_MS, BrowserMissing
from docs.chromium import open_chromium as launch

__all__ = ["LOCAL_HOSTS", "TIMEOUT_MS", "open_chromium", "unavailable"]


def unavailable(reason: str) -> None:
    if os.environ.get("ROWGEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and ROWGEN_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(reason)


@contextlib.contextmanager
def open_chromium() -> Iterator:
    """A headless chromium (a Playwright Browser), closed on exit; skip (or fail) without one."""
    with contextlib.ExitStack() as stack:
        try:
            browser = stack.enter_context(launch())
        except BrowserMissing as exc:
            unavailable(str(exc))
        yield browser
