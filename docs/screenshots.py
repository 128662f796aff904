"""Take the documentation's screenshots from the running servers: `make screenshots`.

    python -m docs.screenshots [--artifacts artifacts] [--out docs] [--only app web]

Starts the Gradio app (`serve.app`) and the in-browser page's server (`serve.web`) in this
process, on free loopback ports, with the bundles under `--artifacts`; opens each in Debian's
chromium through Playwright (docs.chromium); clicks a test image so a completion shows (the app
in its sample mode, so the picture holds the mean's controls and drawn completions; the page
with its first bundle, in its sample mode when that bundle samples: a sample beside the mean);
and writes `screenshot.png` (the app) and `web.png` (the page) to
`--out`. Any request for a host other than 127.0.0.1 is refused and fails the run, so a
screenshot never shows something fetched from outside.

Exit status: 2 when something it needs is missing (no bundles, no chromium or Playwright,
no `npm ci` in web/), 1 when a page fails to show a completion.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

# gradio reads these when imported: no analytics, no version check, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from docs.chromium import LOCAL_HOSTS, TIMEOUT_MS, BrowserMissing, open_chromium
from rowgen.bundle import BundleError, find_bundles

DOCS = Path(__file__).resolve().parent
APP_PNG, WEB_PNG = "screenshot.png", "web.png"
GALLERY_ITEM = 4  # a pullover with a print: its completion shows what the model keeps
# Each page is shot whole; the app's gallery sizes itself to the window, so its window is taller.
APP_VIEWPORT = {"width": 1280, "height": 1000}
WEB_VIEWPORT = {"width": 1280, "height": 640}


class ShotFailed(RuntimeError):
    """A page did not show a completion, or asked for something outside the machine."""


@contextmanager
def app_url(artifacts: Path) -> Iterator[str]:
    """The Gradio app on a free loopback port, closed on exit."""
    from serve.app.layout import build_app, free_port, launch
    from serve.runtime import load_models

    models = load_models(artifacts, "cpu")
    models.warm()  # as `python -m serve` does before its first request
    demo = build_app(models)
    _, url, _ = launch(demo, port=free_port(), block=False)
    try:
        yield url
    finally:
        demo.close()


@contextmanager
def web_url(artifacts: Path) -> Iterator[str]:
    """The in-browser page's static server on a free loopback port, closed on exit."""
    from serve.web import make_server

    server = make_server(artifacts, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def shoot_app(page, target: Path) -> None:
    """Sample mode, then a click on a test image (a click also runs it); full page."""
    page.locator("#mode").get_by_text("sample", exact=True).click()
    page.locator("#gallery .thumbnail-item").nth(GALLERY_ITEM).click()
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('sample(s)')")
    # Done streaming: the status trackers of the picture and the summary are hidden again.
    page.wait_for_function(
        "[...document.querySelectorAll('#result [data-testid=status-tracker],"
        " #stats [data-testid=status-tracker]')].every((t) => t.classList.contains('hide'))"
    )
    image = page.locator("#result img")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    page.screenshot(path=str(target), full_page=True)


def shoot_web(page, target: Path) -> None:
    """A click on a test image, the sample mode where the bundle samples, then Complete; the
    whole page."""
    page.wait_for_function("window.rowgen.status !== 'loading'")
    if page.evaluate("window.rowgen.status") != "ready":
        raise ShotFailed(f"the page did not start: {page.locator('#status').inner_text()}")
    page.locator("#gallery button").nth(GALLERY_ITEM).click()
    if page.locator("#mode-sample").is_enabled():
        page.check("#mode-sample")
    page.locator("#run").click()
    page.wait_for_function("['done', 'error'].includes(window.rowgen.status)")
    if page.evaluate("window.rowgen.status") != "done":
        raise ShotFailed(f"the page's completion failed: {page.evaluate('window.rowgen.error')}")
    page.screenshot(path=str(target), full_page=True)


def shoot(browser, url: str, target: Path, take: Callable, viewport: dict[str, int]) -> None:
    """Open `url` with requests off the machine refused, run `take`, and check none was made."""
    from playwright.sync_api import Error

    # The page's CSP forbids eval, which Playwright's wait_for_function uses.
    context = browser.new_context(bypass_csp=True, viewport=viewport)
    outside: list[str] = []

    def route(r) -> None:
        parts = urlsplit(r.request.url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    try:
        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        take(page, target)
    except Error as exc:  # a timeout included: the page never showed its completion
        raise ShotFailed(f"{target.name}: {exc.message.splitlines()[0]}") from exc
    finally:
        context.close()
    if outside:
        raise ShotFailed(f"{target.name}: the page asked for outside hosts: {outside[:3]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m docs.screenshots", description=__doc__.split("\n")[0]
    )
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles to show")
    p.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    p.add_argument("--only", nargs="+", choices=["app", "web"], default=["app", "web"])
    args = p.parse_args(argv)
    if not find_bundles(args.artifacts):
        print(f"screenshots: no bundles under {args.artifacts}: run `make export`", file=sys.stderr)
        return 2
    from serve.web import SetupError

    jobs = {
        "app": (app_url, APP_PNG, shoot_app, APP_VIEWPORT),
        "web": (web_url, WEB_PNG, shoot_web, WEB_VIEWPORT),
    }
    try:
        with open_chromium() as browser:
            for name in args.only:
                serve, file, take, viewport = jobs[name]
                with serve(args.artifacts) as url:
                    shoot(browser, url, args.out / file, take, viewport)
                print(f"screenshots: {args.out / file}")
    except (BrowserMissing, SetupError, BundleError) as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 2
    except ShotFailed as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
