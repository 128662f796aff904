"""Debian's chromium through Playwright, launched one way for the screenshots and the tests.

`docs.screenshots` uses it as is; tests/chromium.py adds its skip-or-fail policy on top.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"  # Debian's package: `apt-get install chromium`
ARGS = [
    "--no-sandbox",  # root in a container has no user namespace for chromium's sandbox
    "--disable-gpu",
    "--disable-background-networking",  # nothing leaves the machine: no updates, no sync
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000  # generous: CI machines and a busy laptop are slow


class BrowserMissing(RuntimeError):
    """Playwright or chromium is not installed, or chromium did not start; the message says."""


@contextlib.contextmanager
def open_chromium() -> Iterator:
    """A headless chromium (a Playwright Browser), closed on exit."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        raise BrowserMissing("Playwright for Python is not installed (the `dev` extra)") from exc
    if not Path(CHROMIUM).is_file():
        raise BrowserMissing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        except Error as exc:
            raise BrowserMissing(f"chromium did not start: {exc}") from exc
        try:
            yield browser
        finally:
            browser.close()
