"""Debian's chromium through Playwright, launched one way for every browser test.

Skipped when chromium or Playwright is missing, unless ROWGEN_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000  # generous: CI machines and a busy laptop are slow


def unavailable(reason: str) -> None:
    if os.environ.get("ROWGEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and ROWGEN_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(reason)


@contextlib.contextmanager
def open_chromium() -> Iterator:
    """A headless chromium (a Playwright Browser), closed on exit."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    if not Path(CHROMIUM).is_file():
        unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable(f"chromium did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()
